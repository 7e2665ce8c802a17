import t from 'tap'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync, statSync, watch } from 'node:fs'
import { join } from 'node:path'
import { createDatabase, integrityCheck, sha256File } from './helpers'

// CRASH_TRIALS=N runs more kills (the file's timeout grows with it).
const TRIALS = Number(process.env.CRASH_TRIALS ?? 50)
const KEEP = 2
const MAX_KILL_DELAY_MS = 400
const PUBLISH_KILL_DELAY_MS = 10
const FINAL = /^\d{8}T\d{9}Z-[0-9a-f]{8}\.(sqlite|json)$/

if (!Number.isInteger(TRIALS) || TRIALS < 1) throw new Error(`CRASH_TRIALS must be a whole number, got ${process.env.CRASH_TRIALS}`)
// About 2 s per trial on an idle 2-core machine, 8 or more when other test files load both cores: the bounds leave
// room for that (they only make sure that the trials ran; the checks are per trial).
const SECONDS_PER_TRIAL = 12
t.setTimeout(60_000 + TRIALS * SECONDS_PER_TRIAL * 1000)

interface Outcome {
  published?: { id: string, path: string, bytes: number, sha256: string }
  error?: string
  /** The destination's files after the run (mode once). */
  names: string[]
}

interface App {
  child: ChildProcess
  exited: Promise<unknown[]>
  loaded: Promise<unknown>
}

/** sha256 of each published backup file (`<id>.sqlite`) in the destination, by file name. */
function publishedHashes (destination: string): Map<string, string> {
  const hashes = new Map<string, string>()
  for (const name of readdirSync(destination).sort()) {
    if (name.endsWith('.sqlite') && FINAL.test(name)) hashes.set(name, sha256File(join(destination, name)))
  }
  return hashes
}

/** Resolves on the first message from the child that passes `test`; rejects if it exits first or after `ms`. */
function nextMessage (child: ChildProcess, test: (message: unknown) => boolean, ms = 20_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    const onMessage = (message: unknown): void => {
      if (!test(message)) return
      done()
      resolve(message)
    }
    const onExit = (code: number | null, signal: string | null): void => {
      done()
      reject(new Error(`the app exited unexpectedly (code ${code}, signal ${signal})`))
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`no message from the app within ${ms} ms`))
    }, ms)
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

t.test(`SIGKILL at a random moment during backups (${TRIALS} kills) never corrupts, loses or half-publishes a backup`, async (t) => {
  const dir = t.testdir()
  const databasePath = join(dir, 'app.db')
  // About 20 MB: one backup takes a few hundred ms here, so a random kill usually lands inside one.
  createDatabase(databasePath, { rows: 19_000 }).close()
  const destination = join(dir, 'backups')

  const children = new Set<ChildProcess>()
  t.teardown(() => { for (const child of children) child.kill('SIGKILL') })
  // A process killed with SIGKILL writes no coverage: spare the children the coverage and process-tracking hooks.
  const childEnv = { ...process.env }
  delete childEnv.NODE_OPTIONS
  delete childEnv.NODE_V8_COVERAGE

  /** Starts an app process that loads its modules and waits for 'go' before it touches anything. */
  function spawnApp (mode: 'loop' | 'once'): App {
    const child = fork(join(__dirname, 'fixtures', 'crash-app.js'), [databasePath, destination, String(KEEP), mode], {
      env: childEnv,
      // Plain JavaScript: without the test runner's loaders each app starts in a fraction of the time.
      execArgv: [],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc']
    })
    children.add(child)
    const exited = once(child, 'exit')
    exited.finally(() => children.delete(child)).catch(() => {})
    const loaded = nextMessage(child, (message) => message === 'loaded')
    loaded.catch(() => {}) // awaited later; a failure then fails the test
    return { child, exited, loaded }
  }

  /** Starts the app again (a fresh process), checks its clean-up, and backs up once. */
  async function restart ({ child, exited, loaded }: App, killedPid: number): Promise<void> {
    await loaded
    child.send('go')
    await nextMessage(child, (message) => (message as { ready?: boolean }).ready === true)
    const outcome = await nextMessage(child, (message) => 'published' in (message as object) || 'error' in (message as object)) as Outcome
    const names = outcome.names
    t.same(names.filter((name) => name.startsWith('.tmp-')), [], `the restarted app's first run removed the temp files of the killed process (${killedPid})`)
    const orphans = names.filter((name) => name.endsWith('.json') && !names.includes(name.replace(/\.json$/, '.sqlite')))
    t.same(orphans, [], 'and every record whose backup was never published')
    t.same(await exited, [0, null], 'the restarted app closed cleanly')
    t.notOk(outcome.error, 'the first backup after the restart succeeds')
    if (!outcome.published) return
    t.equal(integrityCheck(outcome.published.path), 'ok', 'and is sound')
    t.equal(sha256File(outcome.published.path), outcome.published.sha256)
  }

  // One backup to start with, so that every trial has backups that must survive it.
  await restart(spawnApp('once'), -1)

  const landed = { snapshot: 0, publish: 0, retention: 0, between: 0 }
  const aims = { random: 0, publish: 0 }
  let published = 0
  let trials = 0
  const deadline = Date.now() + TRIALS * SECONDS_PER_TRIAL * 1000 + 30_000
  let next: App | undefined = spawnApp('loop')
  for (; trials < TRIALS && Date.now() < deadline; trials++) {
    const { child, exited, loaded }: App = next ?? spawnApp('loop')
    next = undefined
    await loaded
    const pid = child.pid!
    const before = publishedHashes(destination)
    child.on('message', (message: { published?: string }) => { if (message.published) published++ })

    // Two trials in three: a random moment after ready. The third: a random moment within a few ms of the start
    // of publishing (its temp record appearing), where the renames, directory fsyncs and retention happen.
    const aimAtPublish = trials % 3 === 2
    let watcher: ReturnType<typeof watch> | undefined
    let fallback: NodeJS.Timeout | undefined
    const killed = new Promise<string>((resolve) => {
      const kill = (how: string): void => {
        clearTimeout(fallback)
        watcher?.close()
        child.kill('SIGKILL')
        resolve(how)
      }
      if (aimAtPublish) {
        fallback = setTimeout(() => kill('no publish seen within 15 s'), 15_000)
        watcher = watch(destination, (event, name) => {
          if (name?.startsWith('.tmp-') && name.includes(`-${pid}-`) && name.endsWith('.json')) {
            clearTimeout(fallback)
            const ms = Math.floor(Math.random() * (PUBLISH_KILL_DELAY_MS + 1))
            watcher?.close()
            setTimeout(() => kill(`${ms} ms after publishing began`), ms)
          }
        })
      }
      child.send('go')
      nextMessage(child, (message) => message === 'ready').then(() => {
        if (aimAtPublish) return
        const ms = Math.floor(Math.random() * (MAX_KILL_DELAY_MS + 1))
        setTimeout(() => kill(`${ms} ms after ready`), ms)
      }, (err: Error) => kill(err.message))
    })
    const how = await killed
    aims[aimAtPublish ? 'publish' : 'random']++
    const [, signal] = await exited
    t.equal(signal, 'SIGKILL', `trial ${trials}: killed ${how}`)
    // The restarted app and the next trial's app load while this trial is checked; they touch nothing before 'go'.
    const restarted = spawnApp('once')
    if (trials + 1 < TRIALS) next = spawnApp('loop')

    // What the killed process left shows where it was when it died.
    const names = readdirSync(destination)
    const temps = names.filter((name) => name.startsWith('.tmp-'))
    t.same(temps.filter((name) => !name.includes(`-${pid}-`)), [], 'the only temp files are the killed process\'s')
    const orphanRecords = names.filter((name) => name.endsWith('.json') && FINAL.test(name) && !names.includes(name.replace(/\.json$/, '.sqlite')))
    const tempBackup = temps.some((name) => /\.sqlite(-journal)?$/.test(name))
    const tempRecord = temps.some((name) => name.endsWith('.json'))
    if (tempRecord || (tempBackup && orphanRecords.length > 0)) landed.publish++
    else if (tempBackup) landed.snapshot++
    else if (orphanRecords.length > 0) landed.retention++
    else landed.between++

    // Every published backup is complete, checked and described by its record.
    const after = publishedHashes(destination)
    for (const [name, sha256] of after) {
      const path = join(destination, name)
      const recordPath = path.replace(/\.sqlite$/, '.json')
      t.ok(existsSync(recordPath), `${name} has its record`)
      const record = JSON.parse(readFileSync(recordPath, 'utf8'))
      t.equal(record.sha256, sha256, `${name}: sha256 matches its record`)
      t.equal(record.bytes, statSync(path).size, `${name}: size matches its record`)
      // Unchanged backups were checked when they appeared; new ones are checked now.
      if (before.get(name) !== sha256) t.equal(integrityCheck(path), 'ok', `${name}: integrity_check`)
    }
    // What existed before the kill is byte-identical, or was deleted by retention, oldest first.
    const survivors = [...before.keys()].filter((name) => after.has(name))
    for (const name of survivors) t.equal(after.get(name), before.get(name), `${name} is byte-identical to before the trial`)
    for (const name of before.keys()) {
      if (!after.has(name)) t.ok(survivors.every((survivor) => survivor > name), `${name} was removed by retention, oldest first`)
    }
    t.ok(after.size >= Math.min(KEEP, before.size), `no fewer than keep=${KEEP} backups (${after.size})`)

    await restart(restarted, pid)
  }
  if (next) next.child.kill('SIGKILL')

  const summary = `${trials} kills (${aims.random} at a random moment 0-${MAX_KILL_DELAY_MS} ms after ready, ${aims.publish} aimed at ` +
    `publishing): ${landed.snapshot} mid-snapshot (temp backup file present), ${landed.publish} mid-publish, ` +
    `${landed.retention} mid-retention, ${landed.between} between runs; the killed apps had published ${published} backups`
  t.comment(summary)
  t.equal(trials, TRIALS, `every trial ran within the time bound (${summary})`)
  t.ok(landed.snapshot > 0, 'some kills landed while a snapshot was being copied')
})
