import t from 'tap'
import fc from 'fast-check'
import {
  backupsToKeep,
  backupsToDelete,
  describeInvalidKeep,
  toPolicy,
  type RetentionCandidate,
  type RetentionPolicy
} from '../lib/retention'

function backup (id: string, iso: string, good = true): RetentionCandidate {
  return { id, createdAt: new Date(iso), good }
}

function kept (backups: readonly RetentionCandidate[], policy: RetentionPolicy): string[] {
  return [...backupsToKeep(backups, policy)].sort()
}

t.test('fixed cases in UTC', async (t) => {
  const hours = ['01', '02', '03', '04', '05'].map((h) => backup(`h${h}`, `2024-05-01T${h}:00:00Z`))
  const sameDay = [
    backup('10:05', '2024-05-01T10:05:00Z'),
    backup('10:20', '2024-05-01T10:20:00Z'),
    backup('10:59', '2024-05-01T10:59:59Z'),
    backup('11:00', '2024-05-01T11:00:00Z'),
    backup('11:30', '2024-05-01T11:30:00Z'),
    backup('13:10', '2024-05-01T13:10:00Z'),
    backup('13:45', '2024-05-01T13:45:00Z')
  ]
  const gappyDays = [
    backup('01-01 09h', '2024-01-01T09:00:00Z'),
    backup('01-01 18h', '2024-01-01T18:00:00Z'),
    backup('01-05', '2024-01-05T12:00:00Z'),
    backup('01-20 08h', '2024-01-20T08:00:00Z'),
    backup('01-20 22h', '2024-01-20T22:00:00Z')
  ]
  // ISO weeks: 2020 has 53 weeks, and 2021-01-03 (a Sunday) still belongs to 2020-W53.
  const yearEnd2020 = [
    backup('2020-12-27 Sun W52', '2020-12-27T12:00:00Z'),
    backup('2020-12-28 Mon W53', '2020-12-28T12:00:00Z'),
    backup('2021-01-03 Sun W53', '2021-01-03T12:00:00Z'),
    backup('2021-01-04 Mon W01', '2021-01-04T12:00:00Z'),
    backup('2021-01-10 Sun W01', '2021-01-10T12:00:00Z')
  ]
  // 2018-12-31 (a Monday) already belongs to 2019-W01.
  const yearEnd2018 = [
    backup('2018-12-30 Sun W52', '2018-12-30T12:00:00Z'),
    backup('2018-12-31 Mon W01', '2018-12-31T12:00:00Z'),
    backup('2019-01-06 Sun W01', '2019-01-06T12:00:00Z')
  ]
  const months = [
    backup('01-31', '2024-01-31T23:59:59Z'),
    backup('02-01', '2024-02-01T00:00:00Z'),
    backup('02-29', '2024-02-29T12:00:00Z'),
    backup('04-15', '2024-04-15T12:00:00Z')
  ]
  const overlapping = [
    backup('a0', '2024-03-31T08:00:00Z'),
    backup('a', '2024-03-31T10:00:00Z'),
    backup('b', '2024-04-01T09:00:00Z'),
    backup('c', '2024-04-02T08:00:00Z'),
    backup('d', '2024-04-02T20:00:00Z')
  ]
  const withBad = [
    backup('1', '2024-05-01T01:00:00Z'),
    backup('2 bad', '2024-05-01T02:00:00Z', false),
    backup('3', '2024-05-01T03:00:00Z'),
    backup('4 bad', '2024-05-01T04:00:00Z', false)
  ]
  const ties = [
    backup('z', '2024-05-01T09:00:00Z'),
    backup('b', '2024-05-01T10:00:00Z'),
    backup('c', '2024-05-01T10:00:00Z'),
    backup('a', '2024-05-01T10:00:00Z')
  ]

  const cases: Array<[string, RetentionCandidate[], RetentionPolicy, string[]]> = [
    ['last only', hours, { last: 3 }, ['h03', 'h04', 'h05']],
    ['last larger than the list', hours, { last: 10 }, ['h01', 'h02', 'h03', 'h04', 'h05']],
    ['hourly keeps the newest of each hour', sameDay, { hourly: 2, utc: true }, ['11:30', '13:45']],
    ['hourly with room for every hour', sameDay, { hourly: 24, utc: true }, ['10:59', '11:30', '13:45']],
    ['daily: empty days do not use up the count', gappyDays, { daily: 3, utc: true }, ['01-01 18h', '01-05', '01-20 22h']],
    ['daily: 2', gappyDays, { daily: 2, utc: true }, ['01-05', '01-20 22h']],
    ['weekly across 2020-W53', yearEnd2020, { weekly: 3, utc: true }, ['2020-12-27 Sun W52', '2021-01-03 Sun W53', '2021-01-10 Sun W01']],
    ['weekly: 2019-W01 starts in December', yearEnd2018, { weekly: 5, utc: true }, ['2018-12-30 Sun W52', '2019-01-06 Sun W01']],
    ['monthly', months, { monthly: 3, utc: true }, ['01-31', '02-29', '04-15']],
    ['monthly: 2', months, { monthly: 2, utc: true }, ['02-29', '04-15']],
    ['combined rules share backups', overlapping, { last: 2, daily: 2, monthly: 2, utc: true }, ['a', 'b', 'c', 'd']],
    ['bad backups count toward no rule, but the newest is kept', withBad, { last: 2 }, ['1', '3', '4 bad']],
    ['bad backups are skipped by bucket rules', withBad, { hourly: 1, utc: true }, ['3', '4 bad']],
    ['all bad: only the newest', withBad.map((b) => ({ ...b, good: false })), { last: 5, daily: 5 }, ['4 bad']],
    ['a zero count keeps only the newest', hours, { last: 0, daily: 0 }, ['h05']],
    ['ties on createdAt are broken by id', ties, { last: 2 }, ['b', 'c']],
    ['an empty list keeps nothing', [], { last: 3 }, []]
  ]
  for (const [name, backups, policy, expected] of cases) {
    t.same(kept(backups, policy), [...expected].sort(), name)
  }

  t.same(backupsToDelete(overlapping, { last: 2, daily: 2, monthly: 2, utc: true }), ['a0'], 'kept by two rules, counted once')
  t.same(backupsToDelete(ties, { last: 2 }), ['z', 'a'], 'oldest first, ties by id')
  t.same(backupsToDelete([...ties].reverse(), { last: 2 }), ['z', 'a'], 'the input order does not matter')
})

t.test('each bucket rule keeps backups that last alone would delete', async (t) => {
  // Two months, three weeks, three days and three hours of history, newest last (UTC). Days: 03-18 is a Monday.
  const history = [
    backup('jan', '2024-01-15T12:00:00Z'),
    backup('feb', '2024-02-20T12:00:00Z'),
    backup('mar 04 W10', '2024-03-04T12:00:00Z'),
    backup('mar 11 W11', '2024-03-11T12:00:00Z'),
    backup('mar 18 09h', '2024-03-18T09:00:00Z'),
    backup('mar 19 09h', '2024-03-19T09:00:00Z'),
    backup('mar 20 08:10', '2024-03-20T08:10:00Z'),
    backup('mar 20 09:10', '2024-03-20T09:10:00Z'),
    backup('mar 20 10:10', '2024-03-20T10:10:00Z'),
    backup('mar 20 10:40', '2024-03-20T10:40:00Z'),
    backup('mar 20 10:50', '2024-03-20T10:50:00Z')
  ]
  const lastTwo = ['mar 20 10:40', 'mar 20 10:50']
  t.same(kept(history, { last: 2, utc: true }), lastTwo, 'last alone: the two newest')

  const cases: Array<[string, RetentionPolicy, string[]]> = [
    ['hourly: the newest of each of the three newest hours', { last: 2, hourly: 3, utc: true }, ['mar 20 08:10', 'mar 20 09:10']],
    ['daily: the newest of each of the three newest days', { last: 2, daily: 3, utc: true }, ['mar 18 09h', 'mar 19 09h']],
    ['weekly: the newest of each of the three newest ISO weeks', { last: 2, weekly: 3, utc: true }, ['mar 04 W10', 'mar 11 W11']],
    ['monthly: the newest of each of the three newest months', { last: 2, monthly: 3, utc: true }, ['feb', 'jan']]
  ]
  for (const [name, policy, added] of cases) {
    t.same(kept(history, policy), [...lastTwo, ...added].sort(), name)
    t.equal(backupsToDelete(history, policy).length, history.length - lastTwo.length - added.length, `${name}: the rest is deleted`)
  }
  t.same(backupsToDelete(history, { last: 2, hourly: 3, daily: 3, weekly: 3, monthly: 3, utc: true }), ['mar 20 10:10'],
    'all rules together: only the backup that no rule wants is deleted')

  // Rules are independent: the newest backup, kept by last, also fills the newest bucket of every other rule.
  t.same(kept(history, { last: 1, daily: 1, weekly: 1, monthly: 1, utc: true }), ['mar 20 10:50'], 'the newest fills every rule\'s newest bucket')
  t.same(kept(history, { last: 1, daily: 2, utc: true }), ['mar 19 09h', 'mar 20 10:50'])

  // A bad backup counts toward no rule: its hour is filled by an older good backup, or by the next hour back.
  const withBad = history.map((b) => b.id === 'mar 20 09:10' ? { ...b, good: false } : b)
  t.same(kept(withBad, { last: 2, hourly: 3, utc: true }), [...lastTwo, 'mar 19 09h', 'mar 20 08:10'].sort(), 'a bad backup is skipped, not kept')
})

t.test('a number N means { last: N }', async (t) => {
  t.same(toPolicy(3), { last: 3 })
  const policy = { daily: 7, utc: true }
  t.equal(toPolicy(policy), policy, 'a policy passes through')
  const hours = ['01', '02', '03', '04', '05'].map((h) => backup(`h${h}`, `2024-05-01T${h}:00:00Z`))
  for (const n of [1, 2, 5, 9]) t.same(kept(hours, toPolicy(n)), kept(hours, { last: n }), `keep ${n}`)
})

t.test('buckets follow the local time zone unless utc is true', async (t) => {
  // Built with the local Date API, so these hold in whatever zone the tests run in.
  const local = [
    backup('10 22:30', new Date(2024, 5, 10, 22, 30).toISOString()),
    backup('10 23:30', new Date(2024, 5, 10, 23, 30).toISOString()),
    backup('11 00:30', new Date(2024, 5, 11, 0, 30).toISOString()),
    backup('11 08:00', new Date(2024, 5, 11, 8, 0).toISOString()),
    backup('11 08:40', new Date(2024, 5, 11, 8, 40).toISOString())
  ]
  t.same(kept(local, { daily: 2 }), ['10 23:30', '11 08:40'])
  t.same(kept(local, { hourly: 3 }), ['10 23:30', '11 00:30', '11 08:40'])
  t.same(kept(local, { monthly: 5 }), ['11 08:40'])

  // In a zone far from UTC, the local and UTC calendar days differ.
  const saved = process.env.TZ
  t.teardown(() => {
    if (saved === undefined) delete process.env.TZ
    else process.env.TZ = saved
  })
  process.env.TZ = 'Pacific/Auckland'
  t.equal(new Date('2024-06-10T12:00:00Z').getTimezoneOffset(), -720, 'the zone is in effect')
  const aroundMidnight = [
    backup('06-10 11:00Z', '2024-06-10T11:00:00Z'), // 23:00 on the 10th in Auckland
    backup('06-10 13:00Z', '2024-06-10T13:00:00Z') // 01:00 on the 11th in Auckland
  ]
  t.same(kept(aroundMidnight, { daily: 2 }), ['06-10 11:00Z', '06-10 13:00Z'], 'two local days')
  t.same(kept(aroundMidnight, { daily: 2, utc: true }), ['06-10 13:00Z'], 'one UTC day')
})

t.test('describeInvalidKeep', async (t) => {
  const invalid: unknown[] = [
    0, -1, 1.5, NaN, Infinity, 2 ** 53, '3', null, undefined, true, [], [3], {}, { utc: true }, { last: 0 },
    { daily: -1 }, { dayly: 3 }, { last: 1.5 }, { last: '2' }, { utc: 'yes', last: 1 }, { weekly: NaN, last: 1 },
    { last: 1, yearly: 1 }, new Date()
  ]
  for (const value of invalid) {
    const message = describeInvalidKeep(value)
    t.type(message, 'string', `invalid: ${String(JSON.stringify(value))}`)
  }
  t.match(describeInvalidKeep({ dayly: 3 }), /"dayly"/, 'names an unknown key')
  t.match(describeInvalidKeep({ daily: -1 }), /"daily"/, 'names a bad count')
  t.match(describeInvalidKeep({ utc: 'yes', last: 1 }), /"utc"/, 'names a bad utc')
  t.match(describeInvalidKeep(0), /at least 1/)
  t.match(describeInvalidKeep({ utc: true }), /at least one of/)

  const valid: unknown[] = [
    1, 24, Number.MAX_SAFE_INTEGER, { last: 1 }, { daily: 7 }, { last: 0, monthly: 1 },
    { last: 24, hourly: 48, daily: 7, weekly: 4, monthly: 12, utc: false }, { hourly: 1, utc: true }, { daily: 7, last: undefined }
  ]
  for (const value of valid) t.equal(describeInvalidKeep(value), undefined, `valid: ${JSON.stringify(value)}`)
})

t.test('properties', async (t) => {
  const start = Date.UTC(2022, 0, 1)
  const threeYearsInMinutes = 3 * 366 * 24 * 60
  // Mostly spread over three years; sometimes crowded into a few minutes so that ties happen.
  const minute = fc.oneof({ arbitrary: fc.integer({ min: 0, max: threeYearsInMinutes }), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 5 }), weight: 1 })
  const backups = fc.array(fc.record({ minute, good: fc.boolean() }), { maxLength: 60 })
    .map((list) => list.map(({ minute, good }, i): RetentionCandidate => ({ id: `b${String(i).padStart(2, '0')}`, createdAt: new Date(start + minute * 60_000), good })))
  const countArb = fc.integer({ min: 0, max: 12 })
  const policies = fc.record({ last: countArb, hourly: countArb, daily: countArb, weekly: countArb, monthly: countArb, utc: fc.boolean() }, { requiredKeys: [] })
  const rules = ['last', 'hourly', 'daily', 'weekly', 'monthly'] as const
  const newestFirst = (list: readonly RetentionCandidate[]): RetentionCandidate[] =>
    [...list].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1))

  const check = (name: string, property: fc.IPropertyWithHooks<any> | fc.IProperty<any>): void => {
    t.doesNotThrow(() => fc.assert(property, { numRuns: 300 }), name)
  }

  check('never deletes the newest', fc.property(backups, policies, (list, policy) => {
    return list.length === 0 || backupsToKeep(list, policy).has(newestFirst(list)[0].id)
  }))
  check('the kept set is a subset of the input', fc.property(backups, policies, (list, policy) => {
    const ids = new Set(list.map((b) => b.id))
    return [...backupsToKeep(list, policy)].every((id) => ids.has(id))
  }))
  check('idempotent', fc.property(backups, policies, (list, policy) => {
    const keep = backupsToKeep(list, policy)
    const again = backupsToKeep(list.filter((b) => keep.has(b.id)), policy)
    return again.size === keep.size && [...keep].every((id) => again.has(id))
  }))
  check('monotonic in every count', fc.property(backups, policies, fc.constantFrom(...rules), fc.integer({ min: 1, max: 5 }), (list, policy, rule, more) => {
    const before = backupsToKeep(list, policy)
    const after = backupsToKeep(list, { ...policy, [rule]: (policy[rule] ?? 0) + more })
    return [...before].every((id) => after.has(id))
  }))
  check('last alone with all good keeps exactly the n newest', fc.property(backups, fc.integer({ min: 1, max: 70 }), (list, n) => {
    const allGood = list.map((b) => ({ ...b, good: true }))
    const expected = newestFirst(allGood).slice(0, n).map((b) => b.id).sort()
    return JSON.stringify(kept(allGood, { last: n })) === JSON.stringify(expected)
  }))
  check('delete and keep partition the input, deletions oldest first', fc.property(backups, policies, (list, policy) => {
    const keep = backupsToKeep(list, policy)
    const remove = backupsToDelete(list, policy)
    const expectedOrder = newestFirst(list).reverse().map((b) => b.id).filter((id) => !keep.has(id))
    return remove.every((id) => !keep.has(id)) &&
      remove.length + keep.size === list.length &&
      JSON.stringify(remove) === JSON.stringify(expectedOrder)
  }))
  check('a bad backup is kept only when it is the newest', fc.property(backups, policies, (list, policy) => {
    const keep = backupsToKeep(list, policy)
    const newest = newestFirst(list)[0]
    return list.every((b) => b.good || b === newest || !keep.has(b.id))
  }))
})
