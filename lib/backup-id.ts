import { randomBytes } from 'node:crypto'
import { FST_SQLITE_BACKUP_INVALID_ID } from './errors'

/** Every backup id: a UTC timestamp to the millisecond, which sorts in time order, then 8 random hex digits. */
const ID = String.raw`\d{8}T\d{9}Z-[0-9a-f]{8}`
const EXACT_ID = new RegExp(`^${ID}$`)

/**
 * A new backup id: a UTC timestamp that sorts in time order, then random bits so that two processes sharing a
 * destination never pick the same name. Ids are always generated here, never taken from input.
 */
export function newBackupId (date: Date): string {
  const stamp = date.toISOString().replace(/[-:.]/g, '')
  return `${stamp}-${randomBytes(4).toString('hex')}`
}

/**
 * The time and id of a snapshot taken at `takenAt`, strictly after `newest` (the newest backup in the destination,
 * if any): ids then sort in snapshot order even when the clock steps back or two snapshots fall in one millisecond.
 */
export function snapshotTime (takenAt: Date, newest: { id: string, createdAt: string } | null): Date {
  if (newest === null) return takenAt
  const latest = Math.max(timeOfId(newest.id).getTime(), Date.parse(newest.createdAt) || 0)
  return takenAt.getTime() > latest ? takenAt : new Date(latest + 1)
}

/** Ids come from callers (a route parameter, a command line): only the exact generated form is accepted. */
export function checkBackupId (id: unknown): string {
  if (typeof id !== 'string' || !EXACT_ID.test(id)) throw new FST_SQLITE_BACKUP_INVALID_ID(JSON.stringify(String(id)).slice(0, 80))
  return id
}

/**
 * A pattern for the names a destination stores: an id, then `suffix` (a regular expression source such as
 * `\.json`). The id is the first capture group.
 */
export function idNamePattern (suffix: string): RegExp {
  return new RegExp(`^(${ID})${suffix}$`)
}

/** The time encoded in an id, for backups whose record is missing. */
export function timeOfId (id: string): Date {
  const [, y, mo, d, h, mi, s, ms] = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z/.exec(id)!
  return new Date(Date.UTC(+y, +mo - 1, +d, +h, +mi, +s, +ms))
}
