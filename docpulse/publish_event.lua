-- Stamp the next seq on an event, append it to the tenant's history and publish it (history.py).
--!include docpulse/append_event.inc.lua
local sequence = KEYS[1]      -- hash: seq, epoch
local history = KEYS[2]       -- stream: one entry per event, id seq-0
local channel = ARGV[1]       -- the tenant's Pub/Sub channel
local event = ARGV[2]         -- the event's JSON, without seq
local max_length = ARGV[3]    -- the history's length (MAXLEN ~)
local ttl_s = ARGV[4]         -- seconds; 0: no expiry
local new_epoch = ARGV[5]     -- the epoch if the log starts anew

return append_event(sequence, history, channel, event, max_length, ttl_s, new_epoch)
