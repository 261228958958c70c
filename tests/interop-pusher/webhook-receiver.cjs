// A Pusher webhook receiver on loopback that checks each POST the way an app would: with the `pusher` server SDK's
// webhook() and isValid() (X-Pusher-Key names the key, X-Pusher-Signature is HMAC-SHA256 of the raw body with its
// secret, Content-Type application/json). One JSON line per POST on standard output:
//   {"kind":"listening","port":N}
//   {"kind":"webhook","n":1,"status":200,"valid":true,"key":"…","time_ms":…,"events":[…]}
//
// usage: node webhook-receiver.cjs '{"key":"APP.KEY","secret":"…","appId":"APP","fail":2}'  (fail: answer 500 to the first N POSTs)
const http = require('http');
const PusherServer = require('pusher');

const options = JSON.parse(process.argv[2]);
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const sdk = new PusherServer({ appId: options.appId, key: options.key, secret: options.secret });
let n = 0;

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    n++;
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const webhook = sdk.webhook({ headers: req.headers, rawBody });
    const valid = webhook.isValid();
    const status = n <= (options.fail || 0) ? 500 : 200;
    let data = null;
    try { data = JSON.parse(rawBody); } catch { data = null; }
    out({ kind: 'webhook', n, status, valid, key: req.headers['x-pusher-key'], contentType: req.headers['content-type'], time_ms: data && data.time_ms, events: data && data.events });
    res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end(status === 200 ? 'ok' : 'failing on purpose');
  });
});

server.listen(0, '127.0.0.1', () => out({ kind: 'listening', port: server.address().port }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
