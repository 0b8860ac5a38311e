// A Pusher-protocol endpoint for the tests: the HTTP API (POST /apps/APP_ID/events), whose request
// signatures are checked with the official Pusher Node library, and the WebSocket protocol that
// pusher-js (Echo's Pusher connector) speaks, for public channels.
// Usage: PUSHER_APP_SECRET=… node pusher-server.js APP_ID APP_KEY
// Prints {"port":N} once listening, then one JSON line per API request: {"path", "valid", "error"}.
'use strict';
const http = require('http');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');
const Pusher = require('pusher');
const util = require('pusher/lib/util');

const [appId, key] = process.argv.slice(2);
const secret = process.env.PUSHER_APP_SECRET;
const token = new Pusher.Token(key, secret);
const print = (v) => console.log(JSON.stringify(v));

/** Checks a request as Pusher's HTTP API does ("Authentication" in its reference). Returns an error or null. */
function check(method, path, query, body) {
  const params = {};
  for (const [k, v] of query) params[k.toLowerCase()] = v;
  const signature = params.auth_signature;
  delete params.auth_signature;
  if (params.auth_key !== key) return 'unknown auth_key';
  if (params.auth_version !== '1.0') return 'auth_version must be 1.0';
  if (Math.abs(Date.now() / 1000 - Number(params.auth_timestamp)) > 600) return 'auth_timestamp too far from now';
  if (body.length > 0 && params.body_md5 !== util.getMD5(body)) return 'body_md5 does not match the body';
  const signed = [method, path, util.toOrderedArray(params).join('&')].join('\n');
  if (!signature || !token.verify(signed, signature)) return 'invalid auth_signature';
  return null;
}

const sockets = new Map(); // socket_id -> { ws, channels: Set }

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://localhost');
    const reply = (status, value) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (req.method !== 'POST' || url.pathname !== `/apps/${appId}/events`) {
      print({ path: url.pathname, valid: false, error: 'not found' });
      return reply(404, { error: 'not found' });
    }
    const error = check(req.method, url.pathname, url.searchParams, body);
    print({ path: url.pathname, valid: error === null, error });
    if (error) return reply(401, { error });
    let event;
    try {
      event = JSON.parse(body);
    } catch (e) {
      return reply(400, { error: 'body is not JSON' });
    }
    // Pusher's API takes `channels` (a list) or `channel` (one name).
    const targets = event.channels || (event.channel ? [event.channel] : []);
    for (const [socketId, { ws, channels }] of sockets) {
      if (event.socket_id === socketId) continue;
      for (const channel of targets) {
        if (channels.has(channel)) ws.send(JSON.stringify({ event: event.name, channel, data: event.data }));
      }
    }
    reply(200, {});
  });
});

const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  if (!req.url.startsWith(`/app/${key}`)) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    const socketId = `${crypto.randomInt(1e9)}.${crypto.randomInt(1e9)}`;
    const state = { ws, channels: new Set() };
    sockets.set(socketId, state);
    const send = (v) => ws.send(JSON.stringify(v));
    send({ event: 'pusher:connection_established', data: JSON.stringify({ socket_id: socketId, activity_timeout: 120 }) });
    ws.on('message', (raw) => {
      let msg;
      try {
        msg = JSON.parse(raw.toString());
      } catch (e) {
        return;
      }
      if (msg.event === 'pusher:ping') send({ event: 'pusher:pong', data: {} });
      if (msg.event === 'pusher:subscribe') {
        state.channels.add(msg.data.channel);
        send({ event: 'pusher_internal:subscription_succeeded', channel: msg.data.channel, data: '{}' });
      }
      if (msg.event === 'pusher:unsubscribe') state.channels.delete(msg.data.channel);
    });
    ws.on('close', () => sockets.delete(socketId));
  });
});

server.listen(0, '127.0.0.1', () => print({ port: server.address().port }));
