// Structured log lines: one JSON object per line, so that a reload, a listener failure or a drained
// connection can be found and parsed by log tooling without regular expressions.

export type LogLevel = 'info' | 'warn' | 'error';

export type Logger = (level: LogLevel, event: string, fields?: Record<string, unknown>) => void;

/** A logger writing one JSON line per event to `write` (the CLI passes stderr). */
export function jsonLogger(write: (line: string) => void): Logger {
  return (level, event, fields = {}) => {
    write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...fields })}\n`);
  };
}

/** A logger that drops everything (library use without logging). */
export const silentLogger: Logger = () => {};
