<?php

// Stands in for Composer's vendor/autoload.php: the framework comes from Debian's php-laravel-framework
// (its own autoloaders under /usr/share/php), the Pusher SDK from vendor/pusher-php-server, and the
// application's App\ classes from app/.

require_once 'Illuminate/autoload.php';
require_once 'GuzzleHttp/autoload.php';

spl_autoload_register(function ($class) {
    $roots = [
        'App\\' => __DIR__.'/../app/',
        'Pusher\\' => __DIR__.'/../vendor/pusher-php-server/src/',
    ];
    foreach ($roots as $prefix => $dir) {
        if (strncmp($class, $prefix, strlen($prefix)) === 0) {
            $file = $dir.str_replace('\\', '/', substr($class, strlen($prefix))).'.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
