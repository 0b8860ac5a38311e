// laravel-echo-server for the tests: Redis subscriber with the app's key prefix, socket.io on PORT.
// Usage: node echo-server.js PORT REDIS_KEY_PREFIX APP_ID APP_KEY
// Prints {"ready":true} once it listens on PORT and is subscribed to Redis.
'use strict';
const [port, keyPrefix, appId, key] = process.argv.slice(2);
const echoServer = require('laravel-echo-server');

// laravel-echo-server logs to stdout; keep stdout for the one JSON line the test reads.
const print = console.log.bind(console);
console.log = (...args) => console.error(...args);
console.info = console.log;
console.warn = console.log;

echoServer
  .run({
    authHost: 'http://127.0.0.1',
    clients: [{ appId, key }],
    database: 'redis',
    databaseConfig: { redis: { host: '127.0.0.1', port: 6379, keyPrefix } },
    devMode: true,
    host: '127.0.0.1',
    port: Number(port),
    protocol: 'http',
    subscribers: { http: false, redis: true },
  })
  .then(() => print(JSON.stringify({ ready: true })));
