// Reads a Relay SSE stream with the npm `eventsource` client (a real third-party EventSource) and prints one
// JSON line per event: {"event","id","data"}. Usage: node sse-client.cjs URL COUNT [LAST_EVENT_ID]
// Exits 0 after COUNT message events, 2 on an error event, 3 after 20 s without them.
const EventSource = require('eventsource');

const [url, countText, lastEventId] = process.argv.slice(2);
const count = Number(countText);
const init = lastEventId ? { headers: { 'Last-Event-ID': lastEventId } } : {};
const source = new EventSource(url, init);
let seen = 0;

const timer = setTimeout(() => { console.log(JSON.stringify({ event: 'timeout' })); source.close(); process.exit(3); }, 20000);

source.onopen = () => console.log(JSON.stringify({ event: 'open' }));
source.onerror = (e) => {
  console.log(JSON.stringify({ event: 'error', status: e.status ?? null, message: e.message ?? null }));
  source.close();
  clearTimeout(timer);
  process.exit(2);
};
for (const name of ['message', 'presence']) {
  source.addEventListener(name, (e) => {
    console.log(JSON.stringify({ event: name, id: e.lastEventId, data: JSON.parse(e.data) }));
    if (name === 'message' && ++seen === count) {
      source.close();
      clearTimeout(timer);
      process.exit(0);
    }
  });
}
