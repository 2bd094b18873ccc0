/** Option parsers shared by both programs: values are validated where they enter. */
import { InvalidArgumentError } from 'commander';

export function intIn(min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError(`expected a whole number, got ${JSON.stringify(v)}`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
    return n;
  };
}

export function defaultDb(): string {
  return process.env.TC_DB && process.env.TC_DB.length > 0 ? process.env.TC_DB : './traffic.db';
}
