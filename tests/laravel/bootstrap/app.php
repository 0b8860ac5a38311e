<?php

$app = new Illuminate\Foundation\Application(dirname(__DIR__));

// The tests run several copies of the app at once: each gets its own storage and cache directory.
if ($storage = getenv('APP_STORAGE_PATH')) {
    $app->useStoragePath($storage);
}

$app->singleton(
    Illuminate\Contracts\Console\Kernel::class,
    App\Console\Kernel::class
);

$app->singleton(
    Illuminate\Contracts\Debug\ExceptionHandler::class,
    App\Exceptions\Handler::class
);

return $app;
