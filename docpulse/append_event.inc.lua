-- append_event: stamp the tenant's next seq on an event, keep it in the tenant's history and
-- publish it (history.py). Included by every script that announces a change with an event, so
-- the change and its event are one step.
--   sequence: hash (seq, epoch); history: stream, one entry per event, id seq-0;
--   channel: the tenant's Pub/Sub channel; event: the event's JSON, without seq;
--   max_length: the history's length (MAXLEN ~); ttl_s: seconds, 0 no expiry;
--   new_epoch: the epoch if the log starts anew. Returns the seq.
-- The event goes out by PUBLISH; the sharded variant (docpulse.scripts, a Redis Cluster) swaps
-- that one line for SPUBLISH, to the channel's shard only, and the `life` line for the node's
-- replication id, which a replica takes anew when it is promoted (and which differs on another
-- primary, after a migration). A seq stamped under another life may have been lost with a
-- crashed primary (replication is asynchronous) and is now stamped again on another event: a
-- new epoch tells every client that may hold the lost one to resync.
local function node_life()  -- called by the sharded variant only
  return string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
end

local function append_event(sequence, history, channel, event, max_length, ttl_s, new_epoch)
  local seq = redis.call('HINCRBY', sequence, 'seq', 1)
  if seq == 1 then redis.call('HSETNX', sequence, 'epoch', new_epoch) end
  local life = nil
  if life then
    local stamped_by = redis.call('HGET', sequence, 'life')
    if stamped_by ~= life then
      if stamped_by and seq > 1 then redis.call('HSET', sequence, 'epoch', new_epoch) end
      redis.call('HSET', sequence, 'life', life)
    end
  end
  local msg = string.sub(event, 1, -2) .. ',"seq":' .. seq .. '}'
  local added = redis.pcall('XADD', history, 'MAXLEN', '~', max_length, seq .. '-0', 'e', msg)
  if type(added) == 'table' and added.err then
    -- the history is ahead of the counter: it belongs to a lost life; start a new epoch
    redis.call('DEL', history)
    redis.call('HSET', sequence, 'epoch', new_epoch)
    redis.call('XADD', history, 'MAXLEN', '~', max_length, seq .. '-0', 'e', msg)
  end
  if tonumber(ttl_s) > 0 then
    redis.call('EXPIRE', sequence, ttl_s)
    redis.call('EXPIRE', history, ttl_s)
  end
  redis.call('PUBLISH', channel, msg)
  return seq
end
