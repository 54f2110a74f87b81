/** pino loggers: JSON lines for journald; secrets redacted before anything is written. */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export const redactPaths = [
  'key',
  '*.key',
  'secret',
  '*.secret',
  '*.secretAccessKey',
  '*.password',
  '*.token',
  'req.headers.authorization',
];

export function createLogger(opts: { level?: string; name: string }, dest?: DestinationStream): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      redact: { paths: redactPaths, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    dest ?? pino.destination({ dest: 2, sync: false }),
  );
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
