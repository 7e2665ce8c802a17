/**
 * Which backups to keep: the keep-last / keep-hourly / keep-daily / keep-weekly / keep-monthly rules of restic's
 * `forget` and borg's `prune`, as a pure function of the backups and the policy.
 *
 * - Backups are ordered by `createdAt`, ties broken by id. A backup kept by any rule is kept, and the newest backup
 *   is always kept, even if it is not good, so that retention can never leave the destination empty.
 * - `last: n` keeps the n newest good backups.
 * - `hourly` / `daily` / `weekly` / `monthly: n` walk the good backups newest first and keep each one whose bucket
 *   (hour, calendar day, ISO week, calendar month) has not been seen yet, until n buckets are kept. Only buckets
 *   that hold a backup count, so a run of empty days does not use up `daily`.
 * - Rules are independent, as in restic: one backup may satisfy several rules at once (borg instead lets each rule
 *   skip the backups that earlier rules already kept).
 * - Buckets follow the server's local time zone unless `utc` is true.
 * - Bad backups (`good: false`, such as one that failed a restore check) count toward no rule.
 */

import type { RetentionPolicy } from '../types/index'

export type { RetentionPolicy }

export interface RetentionCandidate {
  id: string
  createdAt: Date
  good: boolean
}

const BUCKET_RULES = ['hourly', 'daily', 'weekly', 'monthly'] as const
const RULES = ['last', ...BUCKET_RULES] as const
const POLICY_KEYS: readonly string[] = [...RULES, 'utc']
const EXPECTED = 'a whole number of at least 1, or an object such as { last: 24, daily: 7 }'

const KEEPS_EVERYTHING = Symbol('keeps every backup')

/**
 * A policy that deletes nothing, bad backups included: for a caller that was not asked to prune (the command-line
 * tool's `backup` without --keep). Not expressible in the public `keep` option, which needs a rule of at least 1: it
 * passes that validation as `{ last: Number.MAX_SAFE_INTEGER }`, and the marker, which only this module can set, makes
 * backupsToKeep keep the backups whose drill failed too (`last` alone would delete them).
 */
export const KEEP_EVERYTHING: RetentionPolicy = Object.freeze({ last: Number.MAX_SAFE_INTEGER, [KEEPS_EVERYTHING]: true })

/** Normalizes the user's `keep` option: a positive integer N means { last: N }. Throws nothing; validation is elsewhere. */
export function toPolicy (keep: number | RetentionPolicy): RetentionPolicy {
  return typeof keep === 'number' ? { last: keep } : keep
}

/** The ids to keep; everything else may be deleted. Pure: depends only on its arguments. */
export function backupsToKeep (backups: readonly RetentionCandidate[], policy: RetentionPolicy): Set<string> {
  if ((policy as { [KEEPS_EVERYTHING]?: boolean })[KEEPS_EVERYTHING] === true) return new Set(backups.map((backup) => backup.id))
  const newestFirst = [...backups].sort(byAge).reverse()
  const keep = new Set<string>()
  if (newestFirst.length > 0) keep.add(newestFirst[0].id)
  const good = newestFirst.filter((backup) => backup.good)

  for (const backup of good.slice(0, count(policy.last))) keep.add(backup.id)
  for (const rule of BUCKET_RULES) {
    const wanted = count(policy[rule])
    // A set rather than "differs from the previous bucket": with local time, a DST change can make one key recur.
    const seen = new Set<string>()
    for (const backup of good) {
      if (seen.size >= wanted) break
      const key = bucketKey(rule, backup.createdAt, policy.utc === true)
      if (!seen.has(key)) {
        seen.add(key)
        keep.add(backup.id)
      }
    }
  }
  return keep
}

/** Convenience: ids to delete, oldest first. */
export function backupsToDelete (backups: readonly RetentionCandidate[], policy: RetentionPolicy): string[] {
  const keep = backupsToKeep(backups, policy)
  return [...backups].sort(byAge).filter((backup) => !keep.has(backup.id)).map((backup) => backup.id)
}

/** Validates a user-supplied keep option; returns an error message naming the problem, or undefined if valid. */
export function describeInvalidKeep (keep: unknown): string | undefined {
  if (typeof keep === 'number') return Number.isSafeInteger(keep) && keep >= 1 ? undefined : EXPECTED
  if (keep === null || typeof keep !== 'object' || Array.isArray(keep)) return EXPECTED
  const policy = keep as Record<string, unknown>
  for (const key of Object.keys(policy)) {
    if (!POLICY_KEYS.includes(key)) return `an object with only the keys ${POLICY_KEYS.join(', ')}; got "${key}"`
  }
  // An explicit undefined is treated like a missing key, as TypeScript's optional properties allow.
  if (policy.utc !== undefined && typeof policy.utc !== 'boolean') return '"utc" to be true or false'
  for (const rule of RULES) {
    const value = policy[rule]
    if (value !== undefined && !(typeof value === 'number' && Number.isSafeInteger(value) && value >= 0)) {
      return `"${rule}" to be a whole number of at least 0`
    }
  }
  // Without a rule only the newest backup would survive, which is almost certainly a mistake.
  if (!RULES.some((rule) => count(policy[rule] as number | undefined) > 0)) {
    return `at least one of ${RULES.join(', ')} to be 1 or more, such as { last: 24, daily: 7 }`
  }
  return undefined
}

// Oldest first. An invalid date sorts as the oldest so that the order stays total.
function byAge (a: RetentionCandidate, b: RetentionCandidate): number {
  const diff = time(a.createdAt) - time(b.createdAt)
  if (diff !== 0) return diff
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

function time (date: Date): number {
  const ms = date.getTime()
  return Number.isNaN(ms) ? -Infinity : ms
}

// Invalid counts (negative, fractional, NaN) are rejected by describeInvalidKeep; here they simply keep nothing.
function count (value: number | undefined): number {
  return value !== undefined && value > 0 ? Math.floor(value) : 0
}

function bucketKey (rule: typeof BUCKET_RULES[number], date: Date, utc: boolean): string {
  const year = utc ? date.getUTCFullYear() : date.getFullYear()
  const month = utc ? date.getUTCMonth() : date.getMonth()
  const day = utc ? date.getUTCDate() : date.getDate()
  switch (rule) {
    case 'hourly': return `${year}-${month}-${day} ${utc ? date.getUTCHours() : date.getHours()}h`
    case 'daily': return `${year}-${month}-${day}`
    case 'weekly': return isoWeek(year, month, day)
    case 'monthly': return `${year}-${month}`
  }
}

/** ISO 8601 week of a calendar date: weeks start on Monday and belong to the year that holds their Thursday. */
function isoWeek (year: number, month: number, day: number): string {
  const date = new Date(Date.UTC(year, month, day))
  const mondayBased = (date.getUTCDay() + 6) % 7
  date.setUTCDate(date.getUTCDate() + 3 - mondayBased) // the Thursday of the same week
  const weekYear = date.getUTCFullYear()
  const week = 1 + Math.floor((date.getTime() - Date.UTC(weekYear, 0, 1)) / (7 * 86_400_000))
  return `${weekYear}-W${String(week).padStart(2, '0')}`
}
