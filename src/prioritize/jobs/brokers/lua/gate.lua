-- prioritize: JobGate in Lua, so a reservation is one atomic script.
--
-- A line-by-line port of JobGate.reserve (src/prioritize/core/jobgate.py) and
-- the choose it calls (src/prioritize/core/choice.py); read those for the
-- rules. Nothing of the policy is decided here: the resolved limits come in
-- ARGV from JobGate itself (redis.py, _gate_args), and only the stride
-- state is kept in Redis. tests/jobs/test_redis_jobgate_lua.py runs this
-- file and JobGate in lockstep on random policies and snapshots.
--
-- Ranks are 1-based here (Lua arrays), 0-based everywhere else.

-- The gate's rules from ARGV at index `at`: weighted (0/1), capacity, then
-- min, max and stride for each of `n` levels. Returns the gate and the
-- index after its arguments.
local function gate_rules(n, at)
  local g = {
    n = n, weighted = ARGV[at] == '1', capacity = tonumber(ARGV[at + 1]),
    min = {}, max = {}, stride = {}, vtime = 0, passes = {}, waits = {},
  }
  at = at + 2
  for i = 1, n do
    g.min[i] = tonumber(ARGV[at])
    g.max[i] = tonumber(ARGV[at + 1])
    g.stride[i] = tonumber(ARGV[at + 2])
    g.passes[i] = 0
    g.waits[i] = false
    at = at + 3
  end
  return g, at
end

-- JobGate.state's numbers: the virtual time, n passes, n flags.
local function gate_fields(n)
  local fields = { 'vtime' }
  for i = 1, n do
    fields[1 + i] = 'p' .. i
    fields[1 + n + i] = 'w' .. i
  end
  return fields
end

local function gate_set_state(g, values)
  g.vtime = tonumber(values[1] or '0')
  for i = 1, g.n do
    g.passes[i] = tonumber(values[1 + i] or '0')
    g.waits[i] = tonumber(values[1 + g.n + i] or '0') == 1
  end
end

local function gate_state(g)
  local out = { string.format('%.17g', g.vtime) }
  for i = 1, g.n do
    out[1 + i] = string.format('%.17g', g.passes[i])
    out[1 + g.n + i] = g.waits[i] and '1' or '0'
  end
  return out
end

-- choice.choose over the views JobGate._decide builds: the rank chosen and
-- whether weighted order chose it (a turn that costs a stride).
local function gate_decide(g, queued, running, passes)
  local reserves, unmet, held = {}, 0, 0
  for i = 1, g.n do
    reserves[i] = unmet
    if running[i] < g.min[i] then
      unmet = unmet + g.min[i] - running[i]
    end
    held = held + running[i]
  end
  local free = g.capacity - held
  local guarantee, best = nil, nil
  for i = 1, g.n do
    if queued[i] > 0 and running[i] < g.max[i] then
      if guarantee == nil and running[i] < g.min[i] then
        guarantee = i
      end
      if free > reserves[i] and (best == nil or (g.weighted and passes[i] < passes[best])) then
        best = i
      end
    end
  end
  if best == nil then
    return nil, false
  end
  if guarantee ~= nil then
    return guarantee, false
  end
  return best, g.weighted
end

-- JobGate.reserve: decide, and record the turn (even when the answer is nil).
local function gate_reserve(g, queued, running)
  local passes = {}
  for i = 1, g.n do
    passes[i] = g.passes[i]
    if g.weighted and queued[i] > 0 and not g.waits[i] and passes[i] < g.vtime then
      passes[i] = g.vtime
    end
  end
  local rank, by_order = gate_decide(g, queued, running, passes)
  if rank ~= nil and by_order then
    local any_waits = false
    for i = 1, g.n do
      any_waits = any_waits or g.waits[i]
    end
    if any_waits then
      g.vtime = passes[rank]
      passes[rank] = passes[rank] + g.stride[rank]
    end
  end
  g.passes = passes
  for i = 1, g.n do
    local left = queued[i]
    if i == rank then
      left = left - 1
    end
    g.waits[i] = left > 0 and g.max[i] > 0
  end
  return rank
end
