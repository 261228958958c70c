// Globals the k6 runtime provides that @types/k6 leaves to the DOM lib (which these scripts do not load).
// https://grafana.com/docs/k6/latest/javascript-api/ (console)

export {};

declare global {
    interface K6Console {
        log(...data: unknown[]): void;
        info(...data: unknown[]): void;
        warn(...data: unknown[]): void;
        error(...data: unknown[]): void;
        debug(...data: unknown[]): void;
    }

    var console: K6Console;
}
