// The `pusher` server SDK 5 against Relay's HTTP API: one operation from the command line, its result on standard
// output as one JSON line ({"ok":true,"status":200,"body":…} or {"ok":false,"status":401,"body":"…"}).
//
// usage: node pusher-server.cjs '{"port":5000,"key":"APP.KEY","secret":"…","appId":"APP"}' '{"op":"trigger","channels":["a"],"event":"e","data":{…},"params":{…}}'
// ops: trigger, triggerBatch (batch), channels (params), channel (channel, params), users (channel), terminate (user), sendToUser (user, event, data), many (channel, event, count)
const PusherServer = require('pusher');

const options = JSON.parse(process.argv[2]);
const command = JSON.parse(process.argv[3]);
const server = new PusherServer({
  appId: options.appId,
  key: options.key,
  secret: options.secret,
  host: '127.0.0.1',
  port: String(options.port),
  useTLS: false,
  encryptionMasterKeyBase64: options.masterKey,
});

async function run() {
  switch (command.op) {
    case 'trigger': return server.trigger(command.channels, command.event, command.data, command.params);
    case 'triggerBatch': return server.triggerBatch(command.batch);
    case 'channels': return server.get({ path: '/channels', params: command.params || {} });
    case 'channel': return server.get({ path: '/channels/' + encodeURIComponent(command.channel), params: command.params || {} });
    case 'users': return server.get({ path: '/channels/' + encodeURIComponent(command.channel) + '/users' });
    case 'terminate': return server.terminateUserConnections(command.user);
    case 'sendToUser': return server.sendToUser(command.user, command.event, command.data);
    case 'many': {
      // In order: each trigger is answered before the next goes.
      for (let i = 1; i <= command.count; i++) {
        await server.trigger(command.channel, command.event, JSON.stringify({ i }));
      }
      return { status: 200, text: async () => JSON.stringify({ sent: command.count }) };
    }
    default: throw new Error('unknown op ' + command.op);
  }
}

run().then(async (response) => {
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  process.stdout.write(JSON.stringify({ ok: true, status: response.status, body }) + '\n');
}, (error) => {
  process.stdout.write(JSON.stringify({ ok: false, status: error.status, body: error.body, message: String(error.message) }) + '\n');
});
