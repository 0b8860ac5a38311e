<?php

namespace App\Models;

use Illuminate\Database\Eloquent\Model;

/**
 * A phone call, as a call-center application keeps it: in progress while answered_at is set and
 * ended_at is NULL.
 */
class Call extends Model
{
    protected $guarded = [];

    protected $casts = [
        'started_at' => 'datetime',
        'answered_at' => 'datetime',
        'ended_at' => 'datetime',
        'talk_seconds' => 'integer',
    ];
}
