// What the main thread and a worker thread say to each other about one task.

export type TaskName = 'snapshot' | 'raw-copy' | 'quick-check' | 'verify' | 'copy' | 'prove-chain' | 'upload'

export interface TaskRequest {
  task: TaskName
  job: unknown
}

export type TaskReply =
  | { type: 'done', value: unknown }
  | { type: 'aborted' }
  | { type: 'error', message: string, code?: string }

/** Asked between steps of a task: true once the task should stop. */
export type ShouldStop = () => boolean

/** Thrown by a task that stopped because it was asked to. */
export class TaskAborted extends Error {}

/** A task's own failure, with SQLite's or the system's code when there is one. */
export class TaskFailure extends Error {
  readonly code: string | undefined

  constructor (message: string, code?: string) {
    super(message)
    this.code = code
  }
}
