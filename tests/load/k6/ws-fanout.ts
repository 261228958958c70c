// WebSocket fan-out: SUBSCRIBERS connections subscribe to one channel over /v1/realtime, PUBLISHERS
// connections publish RATE messages a second to it, and every subscriber times each delivery from the
// `sentAt` the publisher put in the payload. See README.md beside this file.
//
//   k6 run -e RELAY_URL=http://127.0.0.1:8080 -e SUBSCRIBERS=200 -e RATE=20 tests/load/k6/ws-fanout.ts

import { check } from "k6";
import exec from "k6/execution";
import { Counter, Rate, Trend } from "k6/metrics";
import type { Options } from "k6/options";
import { clearInterval, clearTimeout, setInterval, setTimeout } from "k6/timers";
import type { IntervalID, TimeoutID } from "k6/timers";
import { WebSocket } from "k6/websockets";
import type { MessageEvent } from "k6/websockets";
import {
    envChannel,
    envDuration,
    envInt,
    envNumber,
    isLoadPayload,
    msDuration,
    padding,
    parseServerFrames,
    realtimeUrl,
    relayTarget,
    sendRequest,
} from "./lib/relay.ts";
import type { ServerFrame } from "./lib/relay.ts";

// === Configuration (see README.md) ===

const target = relayTarget();
const channel = envChannel("CHANNEL", "load:fanout");
const subscribers = envInt("SUBSCRIBERS", 100, 1);
/** Messages a second, over all publishers. */
const rate = envNumber("RATE", 10, 0);
/** Publishing connections; by default one per 50 messages a second (Relay allows 100 a second per connection). */
const publishers = envInt("PUBLISHERS", Math.ceil(rate / 50), 1);
const duration = envDuration("DURATION", "30s");
/** How long subscribers have to connect and subscribe before publishing starts. */
const warmup = envDuration("WARMUP", "5s");
/** How long subscribers stay after publishing stops, for the last deliveries (and publishers for their last acks). */
const drain = envDuration("DRAIN", "5s");
const payloadBytes = envInt("PAYLOAD_BYTES", 128, 0);
const latencyP99Ms = envNumber("P99_MS", 250, 0);
const maxErrorRate = envNumber("MAX_ERROR_RATE", 0.01, 0);

const perPublisherRate = rate / publishers;
if (__VU === 0 && perPublisherRate > 100) {
    console.warn(`each publisher sends ${perPublisherRate.toFixed(1)} messages a second; Relay's default limit is 100 per connection (Relay:Ingress:PublishRatePerSecond): raise PUBLISHERS`);
}

// === Metrics ===

/** Publish (the publisher's clock, just before sending) to delivery (a subscriber's clock): same machine, same clock. */
const deliveryLatency = new Trend("relay_delivery_latency", true);
/** Publish to the publisher's `ok`. */
const publishAckLatency = new Trend("relay_publish_ack_latency", true);
/** WebSocket open to the subscriber's `ok` for `subscribe`. */
const subscribeLatency = new Trend("relay_subscribe_latency", true);
const messagesReceived = new Counter("relay_messages_received");
const messagesPublished = new Counter("relay_messages_published");
/** Deliveries whose `seq` was not the previous one plus 1 (the contract promises gapless, ordered seqs per channel). */
const seqGaps = new Counter("relay_seq_gaps");
/** Each operation's outcome: true for an error frame, a disconnect, a socket error or early close, a missing ack. */
const errors = new Rate("relay_errors");

export const options: Options = {
    scenarios: {
        subscribers: {
            executor: "per-vu-iterations",
            exec: "subscriber",
            vus: subscribers,
            iterations: 1,
            maxDuration: msDuration(warmup.ms + duration.ms + drain.ms + 30_000),
        },
        publishers: {
            executor: "per-vu-iterations",
            exec: "publisher",
            vus: publishers,
            iterations: 1,
            startTime: warmup.text,
            maxDuration: msDuration(duration.ms + drain.ms + 30_000),
        },
    },
    thresholds: {
        relay_delivery_latency: [`p(99)<${latencyP99Ms}`],
        relay_errors: [`rate<${maxErrorRate}`],
        relay_seq_gaps: ["count==0"],
        // Without deliveries the latency threshold would pass on no data.
        relay_messages_received: ["count>0"],
        // Every subscriber subscribed and received messages, every publisher published (within the error budget).
        checks: [`rate>=${1 - maxErrorRate}`],
    },
    summaryTrendStats: ["avg", "min", "med", "p(90)", "p(99)", "max", "count"],
};

function framesOf(event: MessageEvent | undefined): ServerFrame[] {
    if (event === undefined) {
        return [];
    }

    try {
        return parseServerFrames(event.data);
    } catch (error) {
        errors.add(true, { reason: "bad_frame" });
        console.warn(`unreadable frame: ${String(error)}`);
        return [];
    }
}

function failure(reason: string, detail: string, code?: number): void {
    errors.add(true, code === undefined ? { reason } : { reason, code: String(code) });
    console.warn(`VU ${exec.vu.idInTest} ${reason}: ${detail}`);
}

const subscribeRef = "subscribe";

/** One subscriber: connect, subscribe, count and time every message until publishing has stopped and drained. */
export function subscriber(): void {
    const socket = new WebSocket(realtimeUrl(target, `k6-sub-${exec.vu.idInTest}`));
    const openedAt = Date.now();
    const closeAt = exec.scenario.startTime + warmup.ms + duration.ms + drain.ms;
    let subscribed = false;
    let lastSeq: number | undefined;
    let received = 0;
    let closing = false;

    const closeTimer = setTimeout(() => {
        closing = true;
        socket.close();
    }, Math.max(0, closeAt - Date.now()));

    socket.onmessage = (event) => {
        const now = Date.now();
        for (const frame of framesOf(event)) {
            switch (frame.type) {
                case "connected":
                    sendRequest(socket, { type: "subscribe", ref: subscribeRef, channel });
                    break;
                case "ok":
                    if (frame.ref === subscribeRef) {
                        subscribed = true;
                        lastSeq = frame.seq;
                        subscribeLatency.add(now - openedAt);
                        errors.add(false);
                    }
                    break;
                case "message":
                    if (frame.channel !== channel) {
                        break;
                    }
                    received++;
                    messagesReceived.add(1);
                    errors.add(false);
                    if (lastSeq !== undefined && frame.seq !== lastSeq + 1) {
                        seqGaps.add(1);
                        console.warn(`VU ${exec.vu.idInTest}: seq ${frame.seq} after ${lastSeq}`);
                    }
                    lastSeq = frame.seq;
                    if (isLoadPayload(frame.data)) {
                        deliveryLatency.add(now - frame.data.sentAt);
                    }
                    break;
                case "error":
                    failure("error_frame", `${frame.code} ${frame.message}`, frame.code);
                    break;
                case "disconnect":
                    failure("disconnect", `${frame.code} ${frame.message}`, frame.code);
                    break;
                default:
                    break;
            }
        }
    };

    socket.onerror = (event) => {
        failure("socket_error", event?.error ?? "unknown");
    };

    socket.onclose = () => {
        clearTimeout(closeTimer);
        if (!closing) {
            failure("closed_early", `after ${received} messages`);
        }

        check({ subscribed, received }, {
            "subscriber subscribed": (s) => s.subscribed,
            "subscriber received messages": (s) => s.received > 0,
        });
    };
}

/** One publisher: connect, publish RATE/PUBLISHERS messages a second for DURATION, wait for the acks, close. */
export function publisher(): void {
    const socket = new WebSocket(realtimeUrl(target, `k6-pub-${exec.vu.idInTest}`));
    const pad = padding(payloadBytes);
    /** ref → sentAt of each publish not yet acknowledged. */
    const pending = new Map<number, number>();
    const tickMs = Math.min(100, Math.max(5, Math.floor(1000 / perPublisherRate)));
    let nextRef = 1;
    let sent = 0;
    let startedAt = 0;
    let ticker: IntervalID | undefined;
    let drainTimer: TimeoutID | undefined;
    let finished = false;
    let closing = false;

    const close = (): void => {
        if (ticker !== undefined) {
            clearInterval(ticker);
            ticker = undefined;
        }

        if (drainTimer !== undefined) {
            clearTimeout(drainTimer);
            drainTimer = undefined;
        }

        if (pending.size > 0) {
            for (let i = 0; i < pending.size; i++) {
                errors.add(true, { reason: "no_ack" });
            }

            console.warn(`VU ${exec.vu.idInTest} no_ack: ${pending.size} publishes were not acknowledged within DRAIN`);
        }

        pending.clear();
        closing = true;
        socket.close();
    };

    const publishOne = (): void => {
        const ref = nextRef++;
        const sentAt = Date.now();
        pending.set(ref, sentAt);
        sendRequest(socket, { type: "publish", ref, channel, name: "load", data: { sentAt, n: sent, pad } });
        sent++;
    };

    const tick = (): void => {
        const elapsed = Date.now() - startedAt;
        if (elapsed >= duration.ms) {
            if (ticker !== undefined) {
                clearInterval(ticker);
                ticker = undefined;
            }

            finished = true;
            if (pending.size === 0) {
                close();
            } else {
                drainTimer = setTimeout(() => {
                    drainTimer = undefined;
                    if (!closing) {
                        close();
                    }
                }, drain.ms);
            }

            return;
        }

        // Publish what is due by now, so the rate holds whatever the timer's granularity.
        const due = Math.floor((elapsed * perPublisherRate) / 1000) + 1;
        while (sent < due) {
            publishOne();
        }
    };

    socket.onmessage = (event) => {
        const now = Date.now();
        for (const frame of framesOf(event)) {
            switch (frame.type) {
                case "connected":
                    if (payloadBytes > frame.maxMessageBytes) {
                        failure("payload_too_large", `PAYLOAD_BYTES ${payloadBytes} exceeds the server's maxMessageBytes ${frame.maxMessageBytes}`);
                        close();
                        return;
                    }
                    startedAt = now;
                    ticker = setInterval(tick, tickMs);
                    tick();
                    break;
                case "ok":
                case "error": {
                    const sentAt = typeof frame.ref === "number" ? pending.get(frame.ref) : undefined;
                    if (sentAt === undefined || typeof frame.ref !== "number") {
                        if (frame.type === "error") {
                            failure("error_frame", `${frame.code} ${frame.message}`, frame.code);
                        }
                        break;
                    }
                    pending.delete(frame.ref);
                    if (frame.type === "ok") {
                        publishAckLatency.add(now - sentAt);
                        messagesPublished.add(1);
                        errors.add(false);
                    } else {
                        failure("publish_error", `${frame.code} ${frame.message}`, frame.code);
                    }
                    if (finished && pending.size === 0 && !closing) {
                        close();
                    }
                    break;
                }
                case "disconnect":
                    failure("disconnect", `${frame.code} ${frame.message}`, frame.code);
                    break;
                default:
                    break;
            }
        }
    };

    socket.onerror = (event) => {
        failure("socket_error", event?.error ?? "unknown");
    };

    socket.onclose = () => {
        if (ticker !== undefined) {
            clearInterval(ticker);
        }

        if (!closing) {
            failure("closed_early", `after ${sent} publishes`);
        }

        check(sent, { "publisher published": (n) => n > 0 });
    };
}
