-- The scripted peer of PRESENCE.JOIN user device room (layout: see online.lua, plus):
--   lua:rooms:{<user>}  hash   "<device>\n<room>" -> member data ("" when none)
--   lua:room:<room>     zset   members scored by their latest activity (what a "who is here"
--                              page reads, most recent first)
-- Publishes one JSON event on the room's channel when the device joins.
-- ARGV: user, device, room. Reply: 1 if the device joined, 0 if it was in the room.
local user, device, room = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = tonumber(redis.call('HGET', 'lua:dev:{' .. user .. '}', device))
if not deadline or deadline <= now then
  return redis.error_reply('ERR device is not connected')
end
local added = redis.call('HSETNX', 'lua:rooms:{' .. user .. '}', device .. '\n' .. room, '')
if added == 0 then return 0 end
local active = tonumber(redis.call('HGET', 'lua:user:{' .. user .. '}', 'since')) or now
redis.call('ZADD', 'lua:room:' .. room, active, user)
local seq = redis.call('HINCRBY', 'lua:user:{' .. user .. '}', 'seq', 1)
redis.call('PUBLISH', 'lua:room:' .. room, cjson.encode({
  room = room, user = user, event = 'join', device = device, ts = now, seq = seq }))
return 1
