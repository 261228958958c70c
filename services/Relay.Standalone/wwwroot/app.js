// Relay chat: a minimal client of the v1 WebSocket protocol. No build step, no dependencies.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    joinForm: $('join-form'), key: $('key'), clientId: $('clientId'), channel: $('channel'), join: $('join'),
    status: $('status'), error: $('error'), messages: $('messages'),
    sendForm: $('send-form'), message: $('message'), send: $('send'),
  };

  let socket = null;
  let channel = null;
  let nextRef = 1;
  const pending = new Map(); // ref -> { resolve, reject }

  function setStatus(state, text) {
    els.status.dataset.state = state;
    els.status.textContent = text ?? state;
    const ready = state === 'connected';
    els.message.disabled = !ready;
    els.send.disabled = !ready;
  }

  function showError(text) {
    els.error.textContent = text;
    els.error.hidden = !text;
  }

  function request(frame) {
    return new Promise((resolve, reject) => {
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected'));
        return;
      }
      const ref = nextRef++;
      pending.set(ref, { resolve, reject });
      socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  function addMessage(message) {
    const item = document.createElement('li');
    const sender = document.createElement('span');
    sender.className = 'sender';
    sender.textContent = message.clientId || '(anonymous)';
    const data = message.data;
    const text = data && typeof data === 'object' && typeof data.text === 'string'
      ? data.text
      : JSON.stringify(data);
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `#${message.seq}${message.name && message.name !== 'chat' ? ' ' + message.name : ''}`;
    item.append(sender, document.createTextNode(': ' + text), meta);
    item.dataset.seq = String(message.seq);
    els.messages.append(item);
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  function handle(frame, ws) {
    switch (frame.type) {
      case 'message':
        if (frame.channel === channel) addMessage(frame);
        break;
      case 'ok':
      case 'pong':
      case 'error': {
        const waiter = pending.get(frame.ref);
        if (!waiter) {
          if (frame.type === 'error') showError(`Error ${frame.code}: ${frame.message}`);
          break;
        }
        pending.delete(frame.ref);
        if (frame.type === 'error') waiter.reject(new Error(`Error ${frame.code}: ${frame.message}`));
        else waiter.resolve(frame);
        break;
      }
      case 'disconnect':
        showError(`Disconnected by the server (${frame.code}): ${frame.message}`);
        ws.close();
        break;
      default:
        break; // connected, presence, and anything newer
    }
  }

  function failPending(reason) {
    for (const waiter of pending.values()) waiter.reject(new Error(reason));
    pending.clear();
  }

  function join(event) {
    event.preventDefault();
    const key = els.key.value.trim();
    const clientId = els.clientId.value.trim();
    const wanted = els.channel.value.trim();
    if (!key || !clientId || !wanted) {
      showError('Fill in the key, your name and a channel.');
      return;
    }

    if (socket) {
      socket.onclose = null;
      socket.close();
      failPending('reconnecting');
    }
    showError('');
    els.messages.replaceChildren();
    setStatus('connecting', 'connecting…');

    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/v1/realtime?key=${encodeURIComponent(key)}&clientId=${encodeURIComponent(clientId)}`;
    const ws = new WebSocket(url, 'relay.v1.json');
    socket = ws;
    channel = wanted;
    let opened = false;

    ws.onmessage = (e) => {
      let parsed;
      try {
        parsed = JSON.parse(e.data);
      } catch {
        return;
      }
      for (const frame of Array.isArray(parsed) ? parsed : [parsed]) {
        if (frame && typeof frame === 'object') handle(frame, ws);
      }
    };

    ws.onopen = async () => {
      opened = true;
      try {
        await request({ type: 'subscribe', channel: wanted });
        if (socket === ws) setStatus('connected');
      } catch (err) {
        if (socket === ws) {
          setStatus('error');
          showError(`Could not join ${wanted}: ${err.message}`);
        }
      }
    };

    ws.onclose = (e) => {
      if (socket !== ws) return;
      socket = null;
      failPending('connection closed');
      if (!opened) {
        setStatus('error');
        showError('Could not connect: check the key (the server refuses a bad key before the WebSocket opens).');
      } else {
        setStatus('disconnected');
        if (!els.error.textContent) showError(`Connection closed${e.reason ? ': ' + e.reason : ''}. Press Join to reconnect.`);
      }
    };
  }

  async function send(event) {
    event.preventDefault();
    const text = els.message.value;
    if (!text.trim()) return;
    els.message.value = '';
    try {
      await request({ type: 'publish', channel, name: 'chat', data: { text } });
      showError('');
    } catch (err) {
      if (!els.message.value) els.message.value = text; // give the text back so it can be sent again
      showError(`Not sent: ${err.message}`);
    }
    els.message.focus();
  }

  els.joinForm.addEventListener('submit', join);
  els.sendForm.addEventListener('submit', send);
  setStatus('disconnected');
})();
