// Drives Relay's MQTT listener with MQTT.js (npm `mqtt`, a client nobody on the team wrote) and prints one JSON line
// per event. Usage:
//   node mqtt-client.cjs URL USER PASSWORD VERSION sub TOPIC COUNT [--opt...]    subscribe, print COUNT messages, exit 0
//   node mqtt-client.cjs URL USER PASSWORD VERSION pub TOPIC HEX... [--opt...]   publish each payload (hex; '-' = empty)
//   node mqtt-client.cjs URL USER PASSWORD VERSION will TOPIC [--opt...]         connect, then drop the socket (no DISCONNECT)
// URL is mqtt://host:port or ws://host:port/mqtt; VERSION is 4 (3.1.1) or 5. Options: --qos=N (1 by default),
// --retain (pub), --id=CLIENTID, --clean=false (a persistent session), --expiry=SECONDS (MQTT 5 session expiry),
// --nosub (sub: resume the session's subscriptions instead of subscribing), --will=TOPIC:HEX (with --qos, --retain),
// --aliases=N (MQTT 5 Topic Alias Maximum: the server may send N topic aliases, which MQTT.js resolves).
// COUNT 0 subscribes and disconnects cleanly. Exits 2 on a connection error (the line carries the CONNACK code), 3 after 20 s.
const mqtt = require('mqtt');

const args = process.argv.slice(2);
const flags = Object.fromEntries(args.filter((a) => a.startsWith('--')).map((a) => {
  const [name, ...value] = a.slice(2).split('=');
  return [name, value.length ? value.join('=') : 'true'];
}));
const [url, username, password, version, mode, topic, ...rest] = args.filter((a) => !a.startsWith('--'));
const qos = Number(flags.qos ?? 1);
const print = (o) => console.log(JSON.stringify(o));
const hexBytes = (hex) => (hex === '-' ? Buffer.alloc(0) : Buffer.from(hex, 'hex'));

const options = {
  username, password, protocolVersion: Number(version), clean: flags.clean !== 'false', reconnectPeriod: 0, connectTimeout: 10000,
};
if (flags.id) options.clientId = flags.id;
if (flags.expiry && Number(version) === 5) options.properties = { sessionExpiryInterval: Number(flags.expiry) };
if (flags.aliases && Number(version) === 5) options.properties = { ...options.properties, topicAliasMaximum: Number(flags.aliases) };
if (flags.will) {
  const [willTopic, willHex] = flags.will.split(':');
  options.will = { topic: willTopic, payload: hexBytes(willHex ?? '-'), qos, retain: flags.retain === 'true' };
}

const timer = setTimeout(() => { print({ event: 'timeout' }); process.exit(3); }, 20000);
const client = mqtt.connect(url, options);
let ending = false;
const done = (code) => { ending = true; clearTimeout(timer); client.end(false, () => process.exit(code)); };

// Once it is ending, the server may close first (after DISCONNECT): a write error then is not a failure.
client.on('error', (e) => { if (ending) return; print({ event: 'error', code: e.code ?? null, message: e.message }); clearTimeout(timer); process.exit(2); });
client.on('connect', async (connack) => {
  print({ event: 'connected', returnCode: connack.returnCode ?? connack.reasonCode ?? 0, sessionPresent: connack.sessionPresent });
  if (mode === 'sub') {
    const count = Number(rest[0]);
    let seen = 0;
    client.on('message', (t, payload, packet) => {
      print({ event: 'message', topic: t, hex: payload.toString('hex'), qos: packet.qos, retain: packet.retain, dup: packet.dup });
      if (++seen === count) done(0);
    });
    if (flags.nosub !== 'true') {
      const granted = await client.subscribeAsync(topic, { qos });
      print({ event: 'subscribed', granted: granted.map((g) => g.qos) });
    }

    if (count === 0) done(0);
  } else if (mode === 'will') {
    // An abrupt end: the broker sees the connection drop without DISCONNECT and sends the will.
    print({ event: 'dropping' });
    client.stream.destroy();
    clearTimeout(timer);
    setTimeout(() => process.exit(0), 200);
  } else {
    for (const hex of rest) {
      await client.publishAsync(topic, hexBytes(hex), { qos, retain: flags.retain === 'true' });
      print({ event: 'published' });
    }
    done(0);
  }
});
