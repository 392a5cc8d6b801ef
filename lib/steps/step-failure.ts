/** A step that stops on purpose: its message is for the operator and needs no stack trace. Pure. */
export class StepFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StepFailure";
  }
}
