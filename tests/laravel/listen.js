// An Echo client, as a Laravel frontend has it: Echo.channel('calls').listen('CallStatusUpdated', …).
// Usage: node listen.js socket.io HOST:PORT APP_ID APP_KEY   (laravel-echo-server)
//        node listen.js pusher HOST:PORT APP_ID APP_KEY      (a Pusher-protocol server)
// Prints {"ready":true} once subscribed, then for every message on the channel one JSON line
// {"event": <event name as sent>, "data": <payload>, "echo": <whether the Echo listener received it>}.
'use strict';
const Echo = require('laravel-echo').default;
const [broadcaster, address, appId, key] = process.argv.slice(2);
const [host, port] = address.split(':');
const print = (v) => console.log(JSON.stringify(v));

// The message being dispatched: each one is captured raw first, then Echo's handlers run (synchronously).
let pending = null;
function raw(event, data) {
  pending = { event, data, echo: false };
  const message = pending;
  setImmediate(() => print(message));
}

let echo;
if (broadcaster === 'socket.io') {
  echo = new Echo({
    broadcaster: 'socket.io',
    host: `http://${address}`,
    client: require('socket.io-client'),
    // the test starts this client beside the server: retry soon while it is not listening yet
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
  });
  const socket = echo.connector.socket;
  const onevent = socket.onevent;
  socket.onevent = function (packet) {
    const [event, channel, data] = packet.data || [];
    if (channel === 'calls') raw(event, data);
    return onevent.call(this, packet);
  };
} else {
  const Pusher = require('pusher-js');
  const client = new Pusher(key, {
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
  });
  echo = new Echo({ broadcaster: 'pusher', key, client });
}

const channel = echo.channel('calls');
if (broadcaster === 'pusher') {
  // a channel's global callbacks run before the ones bound to an event name (Echo's listener)
  echo.connector.pusher.channel('calls').bind_global((event, data) => {
    if (!event.startsWith('pusher')) raw(event, data);
  });
}
channel.listen('CallStatusUpdated', () => {
  if (pending) pending.echo = true;
});

if (broadcaster === 'socket.io') {
  // laravel-echo-server does not acknowledge a subscription: ask its API until the channel is occupied.
  const http = require('http');
  const poll = () =>
    http
      .get(`http://${address}/apps/${appId}/channels/calls?auth_key=${key}`, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          let occupied = false;
          try {
            occupied = JSON.parse(body).occupied;
          } catch (e) {}
          if (occupied) print({ ready: true });
          else setTimeout(poll, 50);
        });
      })
      .on('error', () => setTimeout(poll, 50));
  poll();
} else {
  channel.subscribed(() => print({ ready: true }));
}
