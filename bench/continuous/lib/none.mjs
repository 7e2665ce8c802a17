// No backup tool at all: the writer alone. Only for the checkpoint scenario, as the baseline.
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { forkChild, nextMessage } from './procs.mjs'

const WRITER = fileURLToPath(new URL('../child/writer.mjs', import.meta.url))

export const name = 'none'
export const noBackup = true

export async function prepare () {
  return {}
}

export async function start ({ dbPath, machineDir, rate, checkpointEveryMs, processes, logs }) {
  const log = join(machineDir, 'writer.log')
  logs.push(log)
  const writer = forkChild(WRITER, [dbPath, String(rate), String(checkpointEveryMs)], log)
  processes.push({ name: 'writer', child: writer })
  const ready = await nextMessage(writer, 'ready', 30_000)
  return { writer, synchronous: ready.synchronous, waitForSnapshot: async () => null }
}
