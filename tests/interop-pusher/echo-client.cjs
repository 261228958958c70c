// Laravel Echo 2 with the pusher broadcaster and pusher-js 8, as a Laravel front end uses it: a public channel, a
// private one and a presence one (join), authorized by the `pusher` SDK with the key's secret as Laravel's
// /broadcasting/auth would. Reports what it sees, one JSON object a line.
//
// usage: node echo-client.cjs '{"port":5000,"key":"APP.KEY","secret":"…","appId":"APP","room":"…"}'
const Pusher = require('pusher-js');
const PusherServer = require('pusher');

const options = JSON.parse(process.argv[2]);
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const server = new PusherServer({ appId: options.appId, key: options.key, secret: options.secret, host: '127.0.0.1', port: String(options.port), useTLS: false });

async function main() {
// Echo 2 ships as an ES module (its CommonJS build sits in a "type": "module" package): imported, not required.
const { default: Echo } = await import('laravel-echo');
const echo = new Echo({
  broadcaster: 'pusher',
  Pusher,
  key: options.key,
  cluster: 'relay',
  wsHost: '127.0.0.1',
  wsPort: options.port,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  authorizer: (channel) => ({
    authorize: (socketId, callback) => {
      const presence = channel.name.startsWith('presence-') ? { user_id: 'echo-user', user_info: { name: 'Echo' } } : undefined;
      callback(null, server.authorizeChannel(socketId, channel.name, presence));
    },
  }),
});

const room = options.room;
echo.channel(room).listen('.OrderShipped', (event) => out({ kind: 'event', channel: room, event: 'OrderShipped', data: event }))
  .subscribed(() => out({ kind: 'subscribed', channel: room }));
echo.private(room).listen('OrderPaid', (event) => out({ kind: 'event', channel: 'private-' + room, event: 'App\\Events\\OrderPaid', data: event }))
  .subscribed(() => out({ kind: 'subscribed', channel: 'private-' + room }));
echo.join(room)
  .here((users) => out({ kind: 'here', channel: 'presence-' + room, users }))
  .joining((user) => out({ kind: 'joining', channel: 'presence-' + room, user }))
  .leaving((user) => out({ kind: 'leaving', channel: 'presence-' + room, user }));
}

main().catch((error) => { out({ kind: 'exception', message: String(error && error.stack || error) }); process.exit(1); });
