import t from 'tap'
import fc from 'fast-check'
import { newBackupId, checkBackupId, timeOfId, snapshotTime } from '../lib/backup-id'

// Years 1970 to 9999: the four-digit years of toISOString().
const dates = fc.date({ min: new Date('1970-01-01T00:00:00.000Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true })

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'object' && value !== null) return `the object ${JSON.stringify(value)}`
  return `${typeof value} ${String(value)}`
}

t.test('newBackupId: a UTC timestamp to the millisecond, then 8 random hex digits', async (t) => {
  const id = newBackupId(new Date('2024-03-05T06:07:08.009Z'))
  t.match(id, /^20240305T060708009Z-[0-9a-f]{8}$/)
  const again = newBackupId(new Date('2024-03-05T06:07:08.009Z'))
  t.not(again, id, 'the same millisecond gives another id')
  t.equal(again.slice(0, 19), id.slice(0, 19), 'with the same timestamp')
  const many = new Set(Array.from({ length: 100 }, () => newBackupId(new Date('2024-03-05T06:07:08.009Z'))))
  t.equal(many.size, 100, 'a hundred ids in one millisecond are all distinct')
})

t.test('ids sort in time order', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(dates, dates, (a, b) => {
    const [idA, idB] = [newBackupId(a), newBackupId(b)]
    if (a.getTime() < b.getTime()) return idA < idB
    if (a.getTime() > b.getTime()) return idA > idB
    return idA.slice(0, 19) === idB.slice(0, 19)
  }), { numRuns: 1000 }))
  // Across the digits that a naive format would get wrong: month 9 to 10, a new year, a new millisecond.
  const times = ['2024-09-30T23:59:59.999Z', '2024-10-01T00:00:00.000Z', '2024-12-31T23:59:59.999Z', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.001Z']
  const ids = times.map((iso) => newBackupId(new Date(iso)))
  t.same([...ids].reverse().sort(), ids)
})

t.test('timeOfId gives back the date the id was made from', async (t) => {
  t.equal(timeOfId(newBackupId(new Date('2024-03-05T06:07:08.009Z'))).toISOString(), '2024-03-05T06:07:08.009Z')
  t.doesNotThrow(() => fc.assert(fc.property(dates, (date) => timeOfId(newBackupId(date)).getTime() === date.getTime()), { numRuns: 1000 }))
})

t.test('checkBackupId accepts generated ids as they are', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(dates, (date) => {
    const id = newBackupId(date)
    return checkBackupId(id) === id
  }), { numRuns: 1000 }))
})

t.test('checkBackupId rejects anything else with FST_SQLITE_BACKUP_INVALID_ID', async (t) => {
  // Fixed rather than generated: its random part has letters, so that upper-casing it changes it.
  const valid = '20240305T060708009Z-0a1b2c3d'
  t.equal(checkBackupId(valid), valid)
  const hostile: unknown[] = [
    '', '../x', '..', '.', '/', '/etc/passwd', `/${valid}`, `../${valid}`, `${valid}/..`, `backups/${valid}`,
    `${valid}\0`, `\0${valid}`, `${valid.slice(0, 10)}\0${valid.slice(11)}`,
    `${valid}.sqlite`, `${valid}x`, `${valid}\n`, ` ${valid}`, `${valid} `, `x${valid}`,
    valid.toUpperCase(), valid.slice(0, -1), valid.replace('T', 't'), valid.replace('Z', ''), valid.replace('-', '_'),
    `${valid.slice(0, -8)}0a1b2c3g`, `${valid.slice(0, -8)}0a1b2c3d4`,
    '2024030T060708009Z-0a1b2c3d', '20240305T06070809Z-0a1b2c3d', '.tmp-1-20240305T060708009Z-0a1b2c3d',
    0, 20240305, NaN, null, undefined, true, {}, [valid], { toString: () => valid }, Symbol('id'), 10n
  ]
  for (const id of hostile) {
    t.throws(() => checkBackupId(id), { code: 'FST_SQLITE_BACKUP_INVALID_ID', statusCode: 400 }, `rejects ${describe(id)}`)
  }
  t.throws(() => checkBackupId('../x'), { message: /"\.\.\/x"/ }, 'the message quotes the rejected id')
  const long = t.throws(() => checkBackupId('x'.repeat(1000)), { code: 'FST_SQLITE_BACKUP_INVALID_ID' }) as Error
  t.ok(long.message.length < 300, `and only the start of a long one (${long.message.length} characters)`)
})

t.test('snapshotTime: the time of the snapshot, strictly after the newest backup', async (t) => {
  const at = new Date('2026-03-01T10:00:00.000Z')
  t.equal(snapshotTime(at, null), at, 'no backup yet: the snapshot time itself')
  const older = { id: newBackupId(new Date('2026-03-01T09:00:00.000Z')), createdAt: '2026-03-01T09:00:00.000Z' }
  t.equal(snapshotTime(at, older), at, 'after the newest backup: unchanged')
  const sameMs = { id: newBackupId(at), createdAt: at.toISOString() }
  t.equal(snapshotTime(at, sameMs).getTime(), at.getTime() + 1, 'the same millisecond: one later')
  const future = { id: newBackupId(new Date('2026-03-01T10:00:05.000Z')), createdAt: '2026-03-01T10:00:05.000Z' }
  t.equal(snapshotTime(at, future).toISOString(), '2026-03-01T10:00:05.001Z', 'a clock that stepped back: still after the newest')
  // Whatever the clock says, the new id sorts after the newest one (ids have four-digit years: up to 9999).
  const beforeYear9999 = fc.date({ min: new Date('1970-01-01T00:00:00.000Z'), max: new Date('9998-12-31T23:59:59.999Z'), noInvalidDate: true })
  t.doesNotThrow(() => fc.assert(fc.property(dates, beforeYear9999, (taken, newestAt) => {
    const newest = { id: newBackupId(newestAt), createdAt: newestAt.toISOString() }
    return newBackupId(snapshotTime(taken, newest)) > newest.id
  }), { numRuns: 1000 }))
})
