<?php

namespace Pusher;

/** A request the test app's Pusher client could not make (bad settings, endpoint unreachable). */
class PusherException extends \Exception
{
}
