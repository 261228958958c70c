// Drives Relay's MQTT listener with MQTT.js (npm `mqtt`, a client nobody on the team wrote) and prints one JSON line
// per event. Usage:
//   node mqtt-client.cjs URL USER PASSWORD VERSION sub TOPIC COUNT      subscribe (QoS 1), print COUNT messages, exit 0
//   node mqtt-client.cjs URL USER PASSWORD VERSION pub TOPIC HEX...     publish each payload (hex) at QoS 1, exit 0
// URL is mqtt://host:port or ws://host:port/mqtt; VERSION is 4 (3.1.1) or 5. Exits 2 on a connection error (the
// line carries the CONNACK code), 3 after 20 s.
const mqtt = require('mqtt');

const [url, username, password, version, mode, topic, ...rest] = process.argv.slice(2);
const print = (o) => console.log(JSON.stringify(o));
const timer = setTimeout(() => { print({ event: 'timeout' }); process.exit(3); }, 20000);
const client = mqtt.connect(url, { username, password, protocolVersion: Number(version), clean: true, reconnectPeriod: 0, connectTimeout: 10000 });
const done = (code) => { clearTimeout(timer); client.end(true, () => process.exit(code)); };

client.on('error', (e) => { print({ event: 'error', code: e.code ?? null, message: e.message }); clearTimeout(timer); process.exit(2); });
client.on('connect', async (connack) => {
  print({ event: 'connected', returnCode: connack.returnCode ?? connack.reasonCode ?? 0 });
  if (mode === 'sub') {
    const count = Number(rest[0]);
    let seen = 0;
    client.on('message', (t, payload, packet) => {
      print({ event: 'message', topic: t, hex: payload.toString('hex'), qos: packet.qos });
      if (++seen === count) done(0);
    });
    const granted = await client.subscribeAsync(topic, { qos: 1 });
    print({ event: 'subscribed', granted: granted.map((g) => g.qos) });
  } else {
    for (const hex of rest) {
      await client.publishAsync(topic, Buffer.from(hex, 'hex'), { qos: 1 });
      print({ event: 'published' });
    }
    done(0);
  }
});
