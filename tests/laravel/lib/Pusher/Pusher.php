<?php

namespace Pusher;

/**
 * A test-only client of the Pusher Channels HTTP API, for Laravel's own PusherBroadcaster (Debian's
 * php-laravel-framework), which type-hints \Pusher\Pusher. It does what that broadcaster asks of it when it
 * publishes on a public channel, and nothing more: `trigger()` sends `POST /apps/{app_id}/events`, signed as
 * the API's "Authentication" section describes, with PHP's curl extension.
 *
 * Written for this test app from Pusher's HTTP API reference; it is not the Pusher PHP SDK, which Debian
 * does not package. Private/presence channel authorisation (`socket_auth`, `presence_auth`) is not here: the
 * app broadcasts on a public channel only.
 */
class Pusher
{
    /** Pusher's limit of channels per published event. */
    private const MAX_CHANNELS = 100;

    private $key;

    private $secret;

    private $appId;

    /** @var string scheme://host:port of the API */
    private $baseUrl;

    private $timeout;

    /**
     * The signature of the SDK's constructor, as BroadcastManager::createPusherDriver calls it. Options:
     * `host` (required: this client talks to a given endpoint), `port`, `scheme` (or `useTLS`), `timeout`
     * in seconds.
     *
     * @throws PusherException on missing credentials or host
     */
    public function __construct($auth_key, $secret, $app_id, array $options = [])
    {
        foreach (['auth_key' => $auth_key, 'secret' => $secret, 'app_id' => $app_id] as $name => $value) {
            if (! is_scalar($value) || (string) $value === '') {
                throw new PusherException("Pusher client: $name is missing");
            }
        }
        if (empty($options['host'])) {
            throw new PusherException('Pusher client: the host option is missing');
        }
        $scheme = $options['scheme'] ?? (($options['useTLS'] ?? true) ? 'https' : 'http');
        if (! in_array($scheme, ['http', 'https'], true)) {
            throw new PusherException("Pusher client: unknown scheme '$scheme'");
        }
        $port = (int) ($options['port'] ?? ($scheme === 'https' ? 443 : 80));

        $this->key = (string) $auth_key;
        $this->secret = (string) $secret;
        $this->appId = (string) $app_id;
        $this->baseUrl = sprintf('%s://%s:%d', $scheme, $options['host'], $port);
        $this->timeout = (int) ($options['timeout'] ?? 30);
    }

    /**
     * Publishes `$event` with `$data` on `$channels` ("Publishing events": body `name`, `channels`, `data` as
     * a string, optional `socket_id` to exclude that connection). `$data` is JSON-encoded unless
     * `$already_encoded`. Returns the API's decoded JSON answer.
     *
     * @param  string|string[]  $channels
     * @param  array  $params  only `socket_id` is used
     *
     * @throws ApiErrorException when the API answers with a status other than 2xx
     * @throws PusherException when the request cannot be made
     */
    public function trigger($channels, string $event, $data, array $params = [], bool $already_encoded = false)
    {
        $channels = array_values((array) $channels);
        if (count($channels) < 1 || count($channels) > self::MAX_CHANNELS) {
            throw new PusherException('Pusher client: an event goes to 1 to '.self::MAX_CHANNELS.' channels');
        }
        $body = [
            'name' => $event,
            'data' => $already_encoded ? (string) $data : json_encode($data, JSON_THROW_ON_ERROR),
            'channels' => $channels,
        ];
        if (isset($params['socket_id'])) {
            $body['socket_id'] = (string) $params['socket_id'];
        }

        return $this->post("/apps/{$this->appId}/events", json_encode($body, JSON_THROW_ON_ERROR));
    }

    /**
     * The query string of a signed request: `auth_key`, `auth_timestamp`, `auth_version` and (with a body)
     * `body_md5`, then `auth_signature`, the hex HMAC-SHA256 with the app secret of
     * "METHOD\nPATH\nk=v&k=v…" (the other parameters, sorted by key, values not URL-encoded).
     */
    private function signedQuery(string $method, string $path, string $body, int $timestamp): string
    {
        $params = [
            'auth_key' => $this->key,
            'auth_timestamp' => (string) $timestamp,
            'auth_version' => '1.0',
        ];
        if ($body !== '') {
            $params['body_md5'] = md5($body);
        }
        ksort($params, SORT_STRING);
        $pairs = [];
        foreach ($params as $k => $v) {
            $pairs[] = "$k=$v";
        }
        $signed = implode("\n", [strtoupper($method), $path, implode('&', $pairs)]);
        $params['auth_signature'] = hash_hmac('sha256', $signed, $this->secret);

        return http_build_query($params, '', '&', PHP_QUERY_RFC3986);
    }

    /** @throws ApiErrorException|PusherException */
    private function post(string $path, string $body)
    {
        $url = $this->baseUrl.$path.'?'.$this->signedQuery('POST', $path, $body, time());
        $curl = curl_init($url);
        curl_setopt_array($curl, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => ['Content-Type: application/json'],
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => $this->timeout,
        ]);
        $answer = curl_exec($curl);
        $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $error = curl_error($curl);
        curl_close($curl);

        if ($answer === false) {
            throw new PusherException("Pusher client: POST $path to {$this->baseUrl} failed: $error");
        }
        if ($status < 200 || $status > 299) {
            throw new ApiErrorException(trim((string) $answer) ?: "HTTP $status", $status);
        }

        return json_decode($answer);
    }
}
