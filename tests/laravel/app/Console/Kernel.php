<?php

namespace App\Console;

use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

class Kernel extends ConsoleKernel
{
    /**
     * The application's commands.
     *
     * @var array
     */
    protected $commands = [
        Commands\SeedCalls::class,
        Commands\ShowCalls::class,
        Commands\BroadcastCall::class,
    ];
}
