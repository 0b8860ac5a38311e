<?php

namespace Pusher;

/**
 * The Pusher HTTP API refused a request (status other than 2xx; the code is the status). Laravel's
 * PusherBroadcaster catches this class to report "Pusher error: …", and its existence is how the broadcaster
 * recognises a client with the `trigger($channels, $event, $data, $params)` signature.
 */
class ApiErrorException extends PusherException
{
}
