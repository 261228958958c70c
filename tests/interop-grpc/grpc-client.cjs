// A gRPC client nobody on the team wrote: @grpc/grpc-js with @grpc/proto-loader, loading protos/relay/v1/relay.proto as
// any user would. Driven by GrpcInteropTests; prints one JSON object per line, exits 0 when its scenario completed.
//
//   node grpc-client.cjs stream ADDRESS KEY CHANNEL COUNT   subscribe, print COUNT messages, publish one on the stream
//                                                          (idempotency id, twice), one unary, read history, end
//   node grpc-client.cjs refused ADDRESS KEY CHANNEL        unary Publish and a Connect stream with these credentials:
//                                                          print each call's status and relay-error-code trailer
//   node grpc-client.cjs since ADDRESS KEY CHANNEL EPOCH SEQ COUNT
//                                                          subscribe with since, print the reply and COUNT messages
//   node grpc-client.cjs gzip ADDRESS KEY CHANNEL           on a channel that compresses every message (gzip): a unary
//                                                          Publish, one of 2 MiB that compresses to a few KiB (print
//                                                          its status), then History
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [mode, address, key, channel, ...rest] = process.argv.slice(2);
const definition = loader.loadSync(path.join(__dirname, '..', '..', 'protos', 'relay', 'v1', 'relay.proto'), {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const relay = grpc.loadPackageDefinition(definition).relay.v1;
const client = new relay.Realtime(address, grpc.credentials.createInsecure());
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const fail = (message) => {
  print({ event: 'failed', message });
  process.exit(1);
};
setTimeout(() => fail('timed out'), 20000).unref();

function metadata() {
  const m = new grpc.Metadata();
  m.add('authorization', 'Basic ' + Buffer.from(key).toString('base64'));
  m.add('relay-client-id', 'grpc-js');
  return m;
}

function statusOf(error) {
  const code = error.metadata ? error.metadata.get('relay-error-code') : [];
  const details = error.metadata ? error.metadata.get('grpc-status-details-bin') : [];
  return { grpcCode: error.code, relayCode: code.length ? Number(code[0]) : null, hasDetails: details.length > 0 };
}

function unary(method, request) {
  return new Promise((resolve, reject) => client[method](request, metadata(), { deadline: Date.now() + 10000 }, (error, reply) => (error ? reject(error) : resolve(reply))));
}

function stream() {
  const call = client.connect(metadata());
  const waiting = new Map();
  const pushes = [];
  let onPush = null;
  call.on('data', (frame) => {
    if (frame.ref && waiting.has(frame.ref)) {
      waiting.get(frame.ref)(frame);
      waiting.delete(frame.ref);
    } else if (onPush) {
      onPush(frame);
    } else {
      pushes.push(frame);
    }
  });
  let refs = 0;
  return {
    call,
    request(frame) {
      const ref = 'js' + ++refs;
      return new Promise((resolve) => {
        waiting.set(ref, resolve);
        call.write({ ...frame, ref });
      });
    },
    pushes(handler) {
      onPush = handler;
      while (pushes.length) handler(pushes.shift());
    },
  };
}

async function streamScenario() {
  const count = Number(rest[0]);
  const s = stream();
  const received = new Promise((resolve) => {
    let seen = 0;
    s.pushes((frame) => {
      if (frame.connected) print({ event: 'connected', connectionId: frame.connected.connectionId, clientId: frame.connected.clientId });
      if (frame.message) {
        print({ event: 'message', seq: frame.message.seq, data: frame.message.data.json ? JSON.parse(frame.message.data.json) : null, clientId: frame.message.clientId });
        if (++seen === count) resolve();
      }
    });
  });
  const subscribed = await s.request({ subscribe: { channel } });
  print({ event: 'subscribed', seq: subscribed.subscribed.seq, epoch: subscribed.subscribed.epoch });
  await received;
  const first = await s.request({ publish: { channel, messages: [{ data: { json: '{"from":"grpc-js"}' }, id: 'js-once', name: 'js' }] } });
  const again = await s.request({ publish: { channel, messages: [{ data: { json: '{"from":"grpc-js"}' }, id: 'js-once', name: 'js' }] } });
  print({ event: 'published', seq: first.published.seqs[0], again: again.published.seqs[0] });
  const bad = await s.request({ publish: { channel, messages: [{ data: { json: '{broken' } }] } });
  print({ event: 'error', code: bad.error.code });
  const unaryReply = await unary('publish', { channel, messages: [{ data: { binary: Buffer.from([0, 1, 2, 255]) } }] });
  print({ event: 'unary', seq: unaryReply.seqs[0] });
  const history = await unary('history', { channel, limit: 1000 });
  print({ event: 'history', seqs: history.messages.map((m) => m.seq), last: history.messages[history.messages.length - 1].data.binary.toString('hex') });
  s.call.end();
  s.call.on('status', (status) => {
    print({ event: 'ended', code: status.code });
    process.exit(0);
  });
}

async function refusedScenario() {
  try {
    await unary('publish', { channel, messages: [{ data: { json: '1' } }] });
    print({ event: 'unary', refused: false });
  } catch (error) {
    print({ event: 'unary', refused: true, ...statusOf(error) });
  }

  const call = client.connect(metadata());
  call.on('data', (frame) => print({ event: 'frame', frame: Object.keys(frame).filter((k) => frame[k] && k !== 'ref' && k !== 'frame') }));
  call.on('error', (error) => {
    print({ event: 'stream', ...statusOf(error) });
    process.exit(0);
  });
}

async function sinceScenario() {
  const [epoch, seq, count] = [rest[0], Number(rest[1]), Number(rest[2])];
  const s = stream();
  const received = new Promise((resolve) => {
    let seen = 0;
    s.pushes((frame) => {
      if (frame.message) {
        print({ event: 'message', seq: frame.message.seq });
        if (++seen === count) resolve();
      }
    });
  });
  const reply = await s.request({ subscribe: { channel, since: { epoch, seq } } });
  print({ event: 'subscribed', recovered: reply.subscribed.recovered, seq: reply.subscribed.seq });
  await received;
  s.call.end();
  process.exit(0);
}

async function gzipScenario() {
  // grpc-js compresses every message it sends with the channel's default algorithm (2: gzip).
  const zipped = new relay.Realtime(address, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
  const call = (method, request) =>
    new Promise((resolve, reject) => zipped[method](request, metadata(), { deadline: Date.now() + 10000 }, (error, reply) => (error ? reject(error) : resolve(reply))));
  const small = await call('publish', { channel, messages: [{ data: { json: '{"from":"grpc-js gzip"}' } }] });
  print({ event: 'unary', seq: small.seqs[0] });
  try {
    await call('publish', { channel, messages: [{ data: { binary: Buffer.alloc(2 * 1024 * 1024) } }] });
    print({ event: 'large', refused: false });
  } catch (error) {
    print({ event: 'large', refused: true, ...statusOf(error), details: error.details });
  }
  const history = await call('history', { channel, limit: 10 });
  print({ event: 'history', seqs: history.messages.map((m) => m.seq), json: history.messages.map((m) => m.data.json) });
  process.exit(0);
}

const scenarios = { stream: streamScenario, refused: refusedScenario, since: sinceScenario, gzip: gzipScenario };
if (!scenarios[mode]) fail('unknown scenario ' + mode);
scenarios[mode]().catch((error) => fail(String(error && error.stack ? error.stack : error)));
