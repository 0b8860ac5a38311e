<?php

namespace App\Console\Commands;

use App\Events\CallStatusUpdated;
use App\Models\Call;
use Illuminate\Console\Command;
use Illuminate\Support\Facades\DB;

/**
 * Broadcasts the application's own CallStatusUpdated event for a closed call, through the default
 * broadcaster (BROADCAST_DRIVER), with the reason the audit table gives.
 */
class BroadcastCall extends Command
{
    protected $signature = 'calls:broadcast {id}';

    protected $description = 'Broadcast CallStatusUpdated for a call';

    public function handle()
    {
        $call = Call::findOrFail($this->argument('id'));
        $reason = DB::table('call_closures')
            ->where('call_id', (string) $call->id)
            ->where('outcome', 'closed')
            ->orderByDesc('id')
            ->value('reason');
        broadcast(new CallStatusUpdated($call, $reason));

        return 0;
    }
}
