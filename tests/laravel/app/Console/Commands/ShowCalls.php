<?php

namespace App\Console\Commands;

use App\Models\Call;
use Illuminate\Console\Command;
use Illuminate\Support\Carbon;

/**
 * Reads every call back through Eloquent and prints what the application sees, as JSON.
 */
class ShowCalls extends Command
{
    protected $signature = 'calls:show';

    protected $description = 'Print the calls as Eloquent reads them (JSON)';

    public function handle()
    {
        $calls = Call::orderBy('id')->get()->map(function (Call $call) {
            return [
                'id' => $call->id,
                'extension' => $call->extension,
                'status' => $call->status,
                'hangup_cause' => $call->hangup_cause,
                'talk_seconds' => $call->talk_seconds,
                'answered_at' => $this->time($call, 'answered_at'),
                'ended_at' => $this->time($call, 'ended_at'),
                'carbon_talk_seconds' => $call->ended_at ? $call->answered_at->diffInSeconds($call->ended_at, false) : null,
            ];
        });
        $this->line(json_encode(['timezone' => config('app.timezone'), 'calls' => $calls]));

        return 0;
    }

    private function time(Call $call, string $column)
    {
        $value = $call->{$column};
        if (! $value instanceof Carbon) {
            return null;
        }

        return [
            'raw' => $call->getRawOriginal($column),
            'timezone' => $value->tzName,
            'local' => $value->format('Y-m-d\TH:i:sP'),
            'utc' => $value->copy()->utc()->format('Y-m-d\TH:i:s\Z'),
            'json' => $value->jsonSerialize(),
        ];
    }
}
