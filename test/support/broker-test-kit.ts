/**
 * What the broker layer's tests against a private RabbitMQ share: waiting
 * for a condition, an admin channel per use, rabbitmqctl's JSON, the error
 * a promise rejects with.
 */
import type { Channel, ChannelModel } from 'amqplib';
import type { NovaletError } from '../../config/novalet-error.js';
import type { RabbitMqHandle } from './rabbitmq.js';

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An admin channel of its own per use: a refused operation closes it. */
export async function withChannel<T>(model: ChannelModel, use: (channel: Channel) => Promise<T>): Promise<T> {
  const channel = await model.createChannel();
  channel.on('error', () => undefined);
  try {
    return await use(channel);
  } finally {
    await channel.close().catch(() => undefined);
  }
}

export async function ctlJson<T>(rabbit: RabbitMqHandle, args: string[]): Promise<T[]> {
  return JSON.parse(await rabbit.ctl([...args, '--formatter', 'json', '-q'])) as T[];
}

export async function rejection(promise: Promise<unknown>): Promise<NovaletError> {
  try {
    await promise;
  } catch (error) {
    return error as NovaletError;
  }
  throw new Error('expected a rejection');
}

export function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
