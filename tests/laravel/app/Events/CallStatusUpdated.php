<?php

namespace App\Events;

use App\Models\Call;
use Illuminate\Broadcasting\Channel;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Contracts\Broadcasting\ShouldBroadcastNow;
use Illuminate\Foundation\Events\Dispatchable;

/**
 * The application's own event for a call that ended, on the public `calls` channel; the frontend
 * listens with Echo.channel('calls').listen('CallStatusUpdated', …).
 */
class CallStatusUpdated implements ShouldBroadcastNow
{
    use Dispatchable, InteractsWithSockets;

    public $call;

    public $reason;

    public function __construct(Call $call, string $reason)
    {
        $this->call = $call;
        $this->reason = $reason;
    }

    public function broadcastOn()
    {
        return new Channel('calls');
    }

    public function broadcastWith()
    {
        return [
            'id' => $this->call->id,
            'extension' => $this->call->extension,
            'status' => $this->call->status,
            'ended_at' => $this->call->ended_at,
            'hangup_cause' => $this->call->hangup_cause,
            'talk_seconds' => $this->call->talk_seconds,
            'reason' => $this->reason,
        ];
    }
}
