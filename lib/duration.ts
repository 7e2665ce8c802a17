import { parse } from '@lukeed/ms'
import { FST_SQLITE_BACKUP_INVALID_OPTION } from './errors'

// setTimeout() cannot wait longer than this; a larger delay fires at once.
const MAX_TIMER_DELAY = 2 ** 31 - 1

/**
 * A duration option in milliseconds: a whole number, or a string such as '30s', '10m' or '1h'. `undefined` gives
 * the fallback; anything else that is not a whole number from 1 (or 0 with `allowZero`) to MAX_TIMER_DELAY throws.
 */
export function durationOption (name: string, value: unknown, fallback: number, { allowZero = false } = {}): number {
  if (value === undefined) return fallback
  const ms = typeof value === 'string' ? parse(value.trim()) : value
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0 || ms > MAX_TIMER_DELAY || (ms === 0 && !allowZero)) {
    const expected = `${allowZero ? 'zero or ' : ''}a positive whole number of milliseconds up to ${MAX_TIMER_DELAY}, or a duration such as '30s', '10m' or '1h'`
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(name, expected)
  }
  return ms
}
