-- The scripted peer of PRESENCE.LEAVE user device room (layout: see join.lua). The user stays in
-- the room's listing while another of their devices is in it.
-- ARGV: user, device, room. Reply: 1 if the device was in the room, else 0.
local user, device, room = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rooms = 'lua:rooms:{' .. user .. '}'
if redis.call('HDEL', rooms, device .. '\n' .. room) == 0 then return 0 end
local still = false
local suffix = '\n' .. room
for _, field in ipairs(redis.call('HKEYS', rooms)) do
  if string.sub(field, -#suffix) == suffix then still = true break end
end
if not still then redis.call('ZREM', 'lua:room:' .. room, user) end
local seq = redis.call('HINCRBY', 'lua:user:{' .. user .. '}', 'seq', 1)
redis.call('PUBLISH', 'lua:room:' .. room, cjson.encode({
  room = room, user = user, event = 'leave', device = device, ts = now, seq = seq }))
return 1
