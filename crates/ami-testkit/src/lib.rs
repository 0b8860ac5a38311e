//! A fake AMI server that replays recorded sessions or plays a scripted PBX, for tests and the demo.
#![warn(missing_docs)]
