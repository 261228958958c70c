// A pusher-js 8 client driven over standard input, one JSON command a line, reporting what it sees on standard output,
// one JSON object a line. Channel and user auth are signed by the `pusher` server SDK with the key's secret, as an app's
// own auth endpoint would do it.
//
// usage: node pusher-client.cjs '{"port":5000,"key":"APP.KEY","secret":"…","appId":"APP","masterKey":"base64 (optional)","user":{"user_id":"u1","user_info":{},"watchlist":["u2"]},"transports":["xhr_streaming"] (optional: pusher-js's enabledTransports, ["ws"] when absent),"wsPort":5001 (optional: another port for the WebSocket only)}'
// reports watchlist events as {"kind":"watchlist","name":"online"|"offline","user_ids":[…]}
// commands: {"op":"subscribe","channel":"…"} {"op":"bind","channel":"…","event":"…"} (reports the event with its metadata's user_id) {"op":"unsubscribe","channel":"…"} {"op":"trigger","channel":"…","event":"client-…","data":…}
//           {"op":"signin"} {"op":"disconnect"}
//           {"op":"tally","channel":"…"} subscribes and counts its events without reporting each (for load: data strings
//           that start "p{publisher}-{number}"); {"op":"report","channel":"…"} then reports {"kind":"tally","count",
//           "distinct","duplicates","firstGap":{"publisher","after","got"} or null, and with "numbers":true "numbers":[… in the order received],
//           with "keys":true "keys":["{publisher}-{number}", … in the order received]}
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');
const readline = require('readline');

const options = JSON.parse(process.argv[2]);
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');

const server = new PusherServer({
  appId: options.appId,
  key: options.key,
  secret: options.signingSecret || options.secret,
  host: '127.0.0.1',
  port: String(options.port),
  useTLS: false,
  encryptionMasterKeyBase64: options.masterKey,
});

const client = new PusherClient(options.key, {
  cluster: 'relay',
  wsHost: '127.0.0.1',
  wsPort: options.wsPort || options.port,
  forceTLS: false,
  // The HTTP fallbacks (xhr_streaming, xhr_polling) go to httpHost:httpPort under pusher-js's default httpPath, /pusher.
  httpHost: '127.0.0.1',
  httpPort: options.port,
  enabledTransports: options.transports || ['ws'],
  disableStats: true,
  channelAuthorization: {
    customHandler: ({ socketId, channelName }, callback) => {
      const presence = channelName.startsWith('presence-') ? options.user : undefined;
      callback(null, server.authorizeChannel(socketId, channelName, presence));
    },
  },
  userAuthentication: {
    customHandler: ({ socketId }, callback) => {
      const user = { id: options.user ? options.user.user_id : 'nobody', name: 'signed in' };
      if (options.user && options.user.watchlist) {
        user.watchlist = options.user.watchlist;
      }
      callback(null, server.authenticateUser(socketId, user));
    },
  },
});

client.connection.bind('state_change', (states) => out({ kind: 'state', state: states.current }));
client.connection.bind('connected', () => out({ kind: 'connected', socketId: client.connection.socket_id, transport: client.connection.connection && client.connection.connection.transport.name }));
client.connection.bind('error', (error) => out({ kind: 'error', error: error && error.data ? error.data : String(error && (error.error || error)) }));
client.bind_global((event, data) => {
  if (event === 'pusher:signin_success') {
    out({ kind: 'signin', data });
  }
});
client.user.bind('user-event', (data) => out({ kind: 'user-event', data }));
client.user.watchlist.bind('online', (event) => out({ kind: 'watchlist', name: 'online', user_ids: event.user_ids }));
client.user.watchlist.bind('offline', (event) => out({ kind: 'watchlist', name: 'offline', user_ids: event.user_ids }));
// pusher-js subscribes to the user's own channel after sign-in; say when it is subscribed.
const userWatch = setInterval(() => {
  const channel = client.user.serverToUserChannel;
  if (channel && channel.subscribed) {
    out({ kind: 'user-subscribed', channel: channel.name });
    clearInterval(userWatch);
  }
}, 50);

const channels = new Map();
function subscribe(name, quiet) {
  const channel = client.subscribe(name);
  channels.set(name, channel);
  channel.bind('pusher:subscription_succeeded', (members) => {
    const list = members && members.each ? [] : undefined;
    if (list) members.each((member) => list.push({ id: member.id, info: member.info }));
    out({ kind: 'subscribed', channel: name, members: list, count: members && members.count });
  });
  channel.bind('pusher:subscription_error', (error) => out({ kind: 'subscription_error', channel: name, error }));
  channel.bind('pusher:member_added', (member) => out({ kind: 'member_added', channel: name, id: member.id, info: member.info }));
  channel.bind('pusher:member_removed', (member) => out({ kind: 'member_removed', channel: name, id: member.id }));
  channel.bind('pusher:cache_miss', () => out({ kind: 'cache_miss', channel: name }));
  channel.bind_global((event, data, metadata) => {
    if (!quiet && !event.startsWith('pusher:') && !event.startsWith('pusher_internal:')) {
      out({ kind: 'event', channel: name, event, data, user_id: metadata && metadata.user_id });
    }
  });
}

// Events of a tallied channel, per publisher: the numbers in the order received, duplicates, the first gap or reordering.
const tallies = new Map();
function tally(name) {
  const state = { numbers: [], keys: [], seen: new Set(), last: new Map(), duplicates: 0, firstGap: null, other: 0 };
  tallies.set(name, state);
  subscribe(name, true);
  client.channel(name).bind_global((event, data) => {
    const match = typeof data === 'string' && /^p(\d+)-(\d+)/.exec(data);
    if (event.startsWith('pusher') || !match) {
      state.other += event.startsWith('pusher') ? 0 : 1;
      return;
    }
    const publisher = match[1];
    const number = Number(match[2]);
    const key = publisher + '-' + number;
    if (state.seen.has(key)) {
      state.duplicates++;
    }
    state.seen.add(key);
    const after = state.last.get(publisher) || 0;
    if (number !== after + 1 && !state.firstGap) {
      state.firstGap = { publisher, after, got: number };
    }
    state.last.set(publisher, number);
    state.numbers.push(number);
    state.keys.push(key);
  });
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line);
  try {
    switch (command.op) {
      case 'subscribe': subscribe(command.channel); break;
      case 'tally': tally(command.channel); break;
      case 'report': {
        const state = tallies.get(command.channel);
        out({ kind: 'tally', channel: command.channel, count: state.numbers.length, distinct: state.seen.size, duplicates: state.duplicates, firstGap: state.firstGap, other: state.other, numbers: command.numbers ? state.numbers : undefined, keys: command.keys ? state.keys : undefined });
        break;
      }
      case 'unsubscribe': client.unsubscribe(command.channel); out({ kind: 'unsubscribed', channel: command.channel }); break;
      case 'trigger': out({ kind: 'triggered', ok: channels.get(command.channel).trigger(command.event, command.data) }); break;
      case 'bind': channels.get(command.channel).bind(command.event, (data, metadata) => out({ kind: 'bound', channel: command.channel, event: command.event, data, user_id: metadata && metadata.user_id })); out({ kind: 'bound-ready' }); break;
      case 'signin': client.signin(); break;
      case 'disconnect': client.disconnect(); setTimeout(() => process.exit(0), 100); break;
      default: out({ kind: 'unknown', command });
    }
  } catch (error) {
    out({ kind: 'exception', message: String(error && error.message || error) });
  }
});
