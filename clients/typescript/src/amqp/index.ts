// @logicspike/communication-client/amqp: direct publishing to the service's queue, for Node.
// Kept out of the main entry point so a Workers bundle never imports amqplib or Node modules.

export {
  createPublisher,
  PublishRejectedError,
  PublishTimeoutError,
  PublisherClosedError,
  type Publisher,
  type PublisherEvent,
  type PublisherOptions,
} from './publisher.js';
export {
  buildEnvelope,
  uuidv7,
  ENVELOPE_VERSION,
  MAX_ENVELOPE_BYTES,
  type EnvelopeV1,
  type PublishContent,
  type PublishMessage,
} from './envelope.js';
export { MessageValidationError, type FieldError } from '../errors.js';
