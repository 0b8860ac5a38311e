<?php

// Stands in for Composer's vendor/autoload.php: the framework comes from Debian's php-laravel-framework
// (its own autoloaders under /usr/share/php), the application's App\ classes from app/, and the \Pusher\
// client that Laravel's Pusher broadcaster needs from lib/Pusher/ (the test app's own, see README.md).

require_once 'Illuminate/autoload.php';

spl_autoload_register(function ($class) {
    $roots = [
        'App\\' => __DIR__.'/../app/',
        'Pusher\\' => __DIR__.'/../lib/Pusher/',
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
