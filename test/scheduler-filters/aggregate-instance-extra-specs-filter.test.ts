/**
 * nova's AggregateInstanceExtraSpecsFilter: flavor extra specs, unscoped or
 * scoped aggregate_instance_extra_specs:, against the metadata of the
 * host's aggregates (values split on commas and stripped, all aggregates
 * together), with nova's operators.
 */
import { describe, expect, it } from 'vitest';
import { aggregateInstanceExtraSpecsFilter, aggregateMetadata } from '../../scheduler-filters/filters/aggregate-instance-extra-specs-filter.js';
import { hostView, requestSpec } from '../support/host-views.js';

const host = hostView({ aggregates: [{ name: 'ssd', metadata: { disk: 'ssd', tier: 'gold, silver' } }, { name: 'fast', metadata: { disk: 'nvme', net_gbps: '25' } }, { name: 'empty', metadata: {} }] });
const passes = (extra_specs: Record<string, string>, on = host) => aggregateInstanceExtraSpecsFilter.hostPasses(on, requestSpec({}, { extra_specs }));

describe('AggregateInstanceExtraSpecsFilter', () => {
  it("gathers each key's values over the host's aggregates, split on commas and stripped", () => {
    expect(aggregateMetadata(host)).toEqual(new Map([['disk', new Set(['ssd', 'nvme'])], ['tier', new Set(['gold', 'silver'])], ['net_gbps', new Set(['25'])]]));
  });

  it('passes a flavor without extra specs, and ignores other scopes', () => {
    expect(passes({})).toBeNull();
    expect(passes({ 'capabilities:hypervisor_type': 'QEMU', 'hw:cpu_policy': 'dedicated' })).toBeNull();
  });

  it('passes when one of the values matches, scoped or unscoped', () => {
    expect(passes({ 'aggregate_instance_extra_specs:disk': 'nvme' })).toBeNull();
    expect(passes({ disk: 'ssd' })).toBeNull();
    expect(passes({ tier: 'silver' })).toBeNull();
    expect(passes({ 'aggregate_instance_extra_specs:net_gbps': '>= 10' })).toBeNull();
    expect(passes({ 'aggregate_instance_extra_specs:disk': '<or> hdd <or> nvme' })).toBeNull();
  });

  it('fails when no value matches, naming the values', () => {
    expect(passes({ 'aggregate_instance_extra_specs:disk': 'hdd' })).toBe("its aggregates give disk = 'ssd', 'nvme', none of which satisfies aggregate_instance_extra_specs:disk='hdd'");
  });

  it('fails a host none of whose aggregates has the key — an unscoped key too, as in nova', () => {
    expect(passes({ 'aggregate_instance_extra_specs:gpu': 'true' })).toBe("no aggregate of the host has the key 'gpu' (extra spec aggregate_instance_extra_specs:gpu)");
    expect(passes({ hypervisor_type: 'QEMU' })).toBe("no aggregate of the host has the key 'hypervisor_type' (extra spec hypervisor_type)");
    expect(passes({ disk: 'ssd' }, hostView({ aggregates: [] }))).toBe("no aggregate of the host has the key 'disk' (extra spec disk)");
  });

  it('only the first colon is the scope: the rest is the key', () => {
    const colonKey = hostView({ aggregates: [{ name: 'a', metadata: { 'x:y': 'z' } }] });
    expect(passes({ 'aggregate_instance_extra_specs:x:y': 'z' }, colonKey)).toBeNull();
  });

  it('a requirement nova would raise on fails the host with why', () => {
    expect(passes({ 'aggregate_instance_extra_specs:disk': '>= 1' })).toMatch(/^The extra spec requirement '>= 1' cannot be evaluated against the host's value 'ssd': 'ssd' is not a number\./);
  });
});
