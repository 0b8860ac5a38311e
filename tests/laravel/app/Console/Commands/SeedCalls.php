<?php

namespace App\Console\Commands;

use App\Models\Call;
use Illuminate\Console\Command;

/**
 * Creates answered, unended calls through Eloquent, as the application does when a call is answered.
 */
class SeedCalls extends Command
{
    protected $signature = 'calls:seed {rows : JSON list of {extension, uniqueid, linkedid, answered_minutes_ago}}';

    protected $description = 'Create answered calls (test data)';

    public function handle()
    {
        $rows = json_decode($this->argument('rows'), true, 512, JSON_THROW_ON_ERROR);
        $created = [];
        foreach ($rows as $row) {
            $answered = now()->subMinutes($row['answered_minutes_ago']);
            $call = Call::create([
                'uniqueid' => $row['uniqueid'] ?? null,
                'linkedid' => $row['linkedid'] ?? null,
                'extension' => $row['extension'],
                'status' => 'in_progress',
                'started_at' => $answered->copy()->subSeconds(20),
                'answered_at' => $answered,
            ])->refresh();
            $created[] = ['id' => $call->id, 'answered_at' => $call->answered_at->copy()->utc()->format('Y-m-d\TH:i:s\Z')];
        }
        $this->line(json_encode($created));

        return 0;
    }
}
