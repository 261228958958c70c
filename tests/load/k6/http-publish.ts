// HTTP publish: RATE requests a second (a constant arrival rate, whatever the latency) of
// POST /v1/channels/{channel}/messages with the key in Basic auth, each checked for `201 {"channel","seqs"}`.
// See README.md beside this file.
//
//   k6 run -e RELAY_URL=http://127.0.0.1:8080 -e RATE=200 -e DURATION=1m tests/load/k6/http-publish.ts

import { check } from "k6";
import http from "k6/http";
import type { RefinedResponse } from "k6/http";
import { Counter } from "k6/metrics";
import type { Options } from "k6/options";
import {
    basicAuthorization,
    channelMessagesUrl,
    envChannel,
    envDuration,
    envInt,
    envNumber,
    padding,
    relayTarget,
} from "./lib/relay.ts";
import type { LoadPayload } from "./lib/relay.ts";

// === Configuration (see README.md) ===

const target = relayTarget();
const channel = envChannel("CHANNEL", "load:http");
/** Requests a second. */
const rate = envInt("RATE", 50, 1);
/** Messages per request (the body is an array when > 1); Relay takes at most 100. */
const batch = envInt("BATCH", 1, 1);
const duration = envDuration("DURATION", "30s");
const payloadBytes = envInt("PAYLOAD_BYTES", 128, 0);
/** VUs k6 starts with, and the most it may add when requests slow down. */
const preAllocatedVUs = envInt("VUS", Math.max(1, Math.ceil(rate / 10)), 1);
const maxVUs = envInt("MAX_VUS", Math.max(preAllocatedVUs, rate), preAllocatedVUs);
const latencyP99Ms = envNumber("P99_MS", 500, 0);
const maxErrorRate = envNumber("MAX_ERROR_RATE", 0.01, 0);

const url = channelMessagesUrl(target, channel);
const headers = { Authorization: basicAuthorization(target.key), "Content-Type": "application/json" };
const pad = padding(payloadBytes);

/** Messages acknowledged with a seq. */
const messagesPublished = new Counter("relay_http_messages_published");

export const options: Options = {
    scenarios: {
        publish: {
            executor: "constant-arrival-rate",
            rate,
            timeUnit: "1s",
            duration: duration.text,
            preAllocatedVUs,
            maxVUs,
        },
    },
    thresholds: {
        // Anything but 201 counts as failed (responseCallback below).
        http_req_failed: [`rate<${maxErrorRate}`],
        "http_req_duration{name:publish}": [`p(99)<${latencyP99Ms}`],
        checks: [`rate>${1 - maxErrorRate}`],
        relay_http_messages_published: ["count>0"],
    },
    summaryTrendStats: ["avg", "min", "med", "p(90)", "p(99)", "max", "count"],
};

interface PublishResult {
    readonly channel: string;
    readonly seqs: readonly number[];
}

/** The `201` body, `{"channel","seqs":[…]}`, or undefined when it is not that. */
function publishResult(response: RefinedResponse<undefined>): PublishResult | undefined {
    if (typeof response.body !== "string") {
        return undefined;
    }

    try {
        const body: unknown = JSON.parse(response.body);
        if (
            typeof body === "object" && body !== null
            && "channel" in body && typeof body.channel === "string"
            && "seqs" in body && Array.isArray(body.seqs) && body.seqs.every((seq: unknown) => typeof seq === "number" && Number.isInteger(seq))
        ) {
            return { channel: body.channel, seqs: body.seqs as number[] };
        }
    } catch {
        // not JSON: fall through
    }

    return undefined;
}

let logged = 0;

export default function (): void {
    const messages: Array<{ name: string; data: LoadPayload }> = [];
    for (let i = 0; i < batch; i++) {
        messages.push({ name: "load", data: { sentAt: Date.now(), n: i, pad } });
    }

    const response = http.post(url, JSON.stringify(batch === 1 ? messages[0] : messages), {
        headers,
        tags: { name: "publish" },
        responseCallback: http.expectedStatuses(201),
    });

    const result = publishResult(response);
    const ok = check(response, {
        "status is 201": (r) => r.status === 201,
        "body is {channel, seqs} with one seq per message": () => result !== undefined && result.channel === channel && result.seqs.length === batch,
    });

    if (ok && result !== undefined) {
        messagesPublished.add(result.seqs.length);
    } else if (logged < 10) {
        logged++;
        console.warn(`publish failed: ${response.status} ${response.error} ${String(response.body).slice(0, 300)}`);
    }
}
