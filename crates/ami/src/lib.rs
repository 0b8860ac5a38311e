//! Async AMI client for callwatch: codec, connection state machine, reconnects and the live channel map.
#![warn(missing_docs)]
