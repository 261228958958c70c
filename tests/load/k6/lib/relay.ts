// Shared pieces of the Relay k6 scripts: configuration from __ENV, Relay's URLs and auth,
// and the v1 wire protocol's frames as types (docs/protocol.md and the v1 contract).

import { b64encode } from "k6/encoding";
import type { WebSocket } from "k6/websockets";

// === Configuration ===

/** An environment variable (`k6 run -e NAME=value`, or the shell's environment), or `fallback` when unset or empty. */
export function env(name: string, fallback: string): string {
    const value = __ENV[name];
    return value === undefined || value === "" ? fallback : value;
}

/** A whole number from the environment, at least `min`. A bad value stops the script in the init stage, naming the variable. */
export function envInt(name: string, fallback: number, min: number): number {
    const text = env(name, String(fallback));
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) {
        throw new Error(`${name} must be a whole number >= ${min}, got '${text}'`);
    }

    return value;
}

/** A number from the environment, greater than `exclusiveMin`. */
export function envNumber(name: string, fallback: number, exclusiveMin: number): number {
    const text = env(name, String(fallback));
    const value = Number(text);
    if (!Number.isFinite(value) || value <= exclusiveMin) {
        throw new Error(`${name} must be a number > ${exclusiveMin}, got '${text}'`);
    }

    return value;
}

/** A k6-style duration: the text as given (usable in k6 options) and its length in milliseconds. */
export interface Duration {
    readonly text: string;
    readonly ms: number;
}

const unitMs: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `500ms`, `30s`, `1m30s`, `2h` (k6's and Go's duration syntax without µs/ns). */
export function parseDuration(text: string): number {
    if (!/^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$/.test(text)) {
        throw new Error(`'${text}' is not a duration like 500ms, 30s, 1m30s or 2h`);
    }

    const part = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
    let total = 0;
    for (let match = part.exec(text); match !== null; match = part.exec(text)) {
        total += Number(match[1]) * (unitMs[match[2] ?? ""] ?? Number.NaN);
    }

    return total;
}

/** A duration from the environment. */
export function envDuration(name: string, fallback: string): Duration {
    const text = env(name, fallback);
    try {
        return { text, ms: parseDuration(text) };
    } catch (error) {
        throw new Error(`${name}: ${String(error)}`);
    }
}

/** A duration in k6's syntax for a number of milliseconds (for computed scenario limits). */
export function msDuration(ms: number): string {
    return `${Math.ceil(ms)}ms`;
}

// === Relay's addresses and credentials ===

/** Where the Relay under test is and which key to use. */
export interface RelayTarget {
    /** `http://host:port` (or https), without a trailing slash. */
    readonly httpBase: string;
    /** `ws://host:port` (or wss), without a trailing slash. */
    readonly wsBase: string;
    /** `APPID.KEYID:SECRET`. */
    readonly key: string;
}

/** The standalone host's Development key (services/Relay.Standalone/appsettings.Development.json): for a laptop only. */
export const developmentKey = "demo.root:demo-secret-for-development-only";

/** RELAY_URL (http, https, ws or wss; default http://127.0.0.1:8080) and RELAY_KEY (default: the Development key). */
export function relayTarget(): RelayTarget {
    const url = env("RELAY_URL", "http://127.0.0.1:8080").replace(/\/+$/, "");
    const match = /^(https?|wss?):\/\/([^/?#]+(?:\/[^?#]*)?)$/i.exec(url);
    if (match === null) {
        throw new Error(`RELAY_URL must be an http(s):// or ws(s):// base address like http://127.0.0.1:8080, got '${url}'`);
    }

    const scheme = (match[1] ?? "").toLowerCase();
    const rest = match[2] ?? "";
    const secure = scheme === "https" || scheme === "wss";
    const key = env("RELAY_KEY", developmentKey);
    if (!/^[A-Za-z0-9_-]{1,64}\.[^:]+:.+$/.test(key)) {
        throw new Error("RELAY_KEY must be a key APPID.KEYID:SECRET");
    }

    return {
        httpBase: `${secure ? "https" : "http"}://${rest}`,
        wsBase: `${secure ? "wss" : "ws"}://${rest}`,
        key,
    };
}

/** The `Authorization` header value for a key: `Basic base64(APPID.KEYID:SECRET)`. */
export function basicAuthorization(key: string): string {
    return `Basic ${b64encode(key)}`;
}

/** A channel name the contract accepts (1-255 bytes, none of `+ # *`, no control characters, no empty level), or an error naming the variable. */
export function envChannel(name: string, fallback: string): string {
    const channel = env(name, fallback);
    const bytes = utf8Length(channel);
    if (bytes < 1 || bytes > 255 || /[+#*\u0000-\u001f\u007f]/.test(channel) || channel.split("/").some((level) => level === "")) {
        throw new Error(`${name} must be a channel name (1-255 bytes, none of + # *, no control characters, no empty level), got '${channel}'`);
    }

    return channel;
}

/** A channel as one path segment: `/` becomes `%2F` (docs/protocol.md, HTTP), `:` stays readable. */
export function channelPathSegment(channel: string): string {
    return encodeURIComponent(channel).replace(/%3A/gi, ":");
}

/** `POST`/`GET /v1/channels/{channel}/messages`. */
export function channelMessagesUrl(target: RelayTarget, channel: string): string {
    return `${target.httpBase}/v1/channels/${channelPathSegment(channel)}/messages`;
}

/** `GET /v1/realtime?key=…&clientId=…`: the WebSocket endpoint with the key in the query. */
export function realtimeUrl(target: RelayTarget, clientId: string): string {
    return `${target.wsBase}/v1/realtime?key=${encodeURIComponent(target.key)}&clientId=${encodeURIComponent(clientId)}`;
}

function utf8Length(text: string): number {
    let bytes = 0;
    for (const char of text) {
        const code = char.codePointAt(0) ?? 0;
        bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    }

    return bytes;
}

// === The v1 wire protocol ===

/** A request's `ref`, echoed by its `ok` or `error` reply. */
export type Ref = number | string;

export interface SubscribeRequest {
    readonly type: "subscribe";
    readonly ref: Ref;
    readonly channel: string;
}

export interface PublishRequest {
    readonly type: "publish";
    readonly ref: Ref;
    readonly channel: string;
    readonly data: unknown;
    readonly name?: string;
    readonly id?: string;
}

export interface PingRequest {
    readonly type: "ping";
    readonly ref?: Ref;
}

/** The requests these scripts send. */
export type ClientRequest = SubscribeRequest | PublishRequest | PingRequest;

/** The server's first frame. */
export interface ConnectedFrame {
    readonly type: "connected";
    readonly connectionId: string;
    readonly clientId?: string;
    readonly heartbeatMs: number;
    readonly maxMessageBytes: number;
}

/** A request's success: for `subscribe` with `channel`, `epoch`, `seq`, `recovered`; for `publish` with `channel`, `seq`. */
export interface OkFrame {
    readonly type: "ok";
    readonly ref?: Ref;
    readonly channel?: string;
    readonly epoch?: string;
    readonly seq?: number;
    readonly recovered?: boolean;
}

export interface ErrorFrame {
    readonly type: "error";
    readonly ref?: Ref;
    readonly code: number;
    readonly message: string;
}

export interface MessageFrame {
    readonly type: "message";
    readonly channel: string;
    readonly seq: number;
    readonly epoch: string;
    readonly id?: string;
    readonly name?: string;
    readonly data: unknown;
    readonly clientId?: string;
    readonly timestamp: number;
    readonly encoding?: "base64";
}

export interface PresenceFrame {
    readonly type: "presence";
    readonly channel: string;
    readonly action: "enter" | "update" | "leave";
    readonly clientId: string;
    readonly connectionId: string;
    readonly data?: unknown;
}

export interface DisconnectFrame {
    readonly type: "disconnect";
    readonly code: number;
    readonly message: string;
    readonly reconnect: boolean;
}

export interface PongFrame {
    readonly type: "pong";
    readonly ref?: Ref;
}

/** Every frame type the server sends. */
export type ServerFrame = ConnectedFrame | OkFrame | ErrorFrame | MessageFrame | PresenceFrame | DisconnectFrame | PongFrame;

const serverFrameTypes: ReadonlySet<string> = new Set<ServerFrame["type"]>(["connected", "ok", "error", "message", "presence", "disconnect", "pong"]);

/**
 * The frames in one WebSocket message: one JSON object or an array of them (the server may batch).
 * Throws on anything that is not JSON objects with a string `type`; skips types newer than v1.
 */
export function parseServerFrames(data: string | ArrayBuffer | object): ServerFrame[] {
    if (typeof data !== "string") {
        throw new Error("expected a text frame");
    }

    const parsed: unknown = JSON.parse(data);
    const items: unknown[] = Array.isArray(parsed) ? parsed : [parsed];
    const frames: ServerFrame[] = [];
    for (const item of items) {
        if (typeof item !== "object" || item === null || !("type" in item) || typeof item.type !== "string") {
            throw new Error(`not a frame: ${JSON.stringify(item)}`);
        }

        if (serverFrameTypes.has(item.type)) {
            frames.push(item as ServerFrame);
        }
    }

    return frames;
}

/** Sends one request as a JSON text frame. */
export function sendRequest(socket: WebSocket, request: ClientRequest): void {
    socket.send(JSON.stringify(request));
}

// === Payloads ===

/** The `data` the load scripts publish: `sentAt` (Unix ms, taken just before sending) gives publish→deliver latency. */
export interface LoadPayload {
    readonly sentAt: number;
    readonly n: number;
    readonly pad: string;
}

/** Padding that makes a {@link LoadPayload}'s JSON about `bytes` long (it is never shorter than its fields). */
export function padding(bytes: number): string {
    const overhead = JSON.stringify({ sentAt: Date.now(), n: 1_000_000, pad: "" }).length;
    return "x".repeat(Math.max(0, bytes - overhead));
}

export function isLoadPayload(data: unknown): data is LoadPayload {
    return typeof data === "object" && data !== null && "sentAt" in data && typeof data.sentAt === "number" && "n" in data && typeof data.n === "number";
}
