# Ruby's Bunny (Debian's ruby-bunny) against WarrenMQ.
#
# Usage: ruby roundtrip.rb AMQP_URL
# Publisher confirms on a topic exchange, a manual-ack consumer with prefetch 2 that
# nacks one delivery with requeue (it comes back redelivered) and acks the rest, headers
# and properties kept; the failure path: a passive declare of a missing queue raises
# Bunny::NotFound (404) and closes that channel only. Prints one JSON line.
require "bunny"
require "json"

conn = Bunny.new(ARGV[0], automatically_recover: false)
conn.start
ch = conn.create_channel
ch.confirm_select
exchange = ch.topic("ruby.events", durable: false)
queue = ch.queue("", exclusive: true).bind(exchange, routing_key: "order.*")
6.times do |i|
  exchange.publish({ i: i }.to_json, routing_key: i.even? ? "order.placed" : "user.new",
                   headers: { "n" => i }, content_type: "application/json",
                   message_id: "m#{i}")
end
confirmed = ch.wait_for_confirms

ch.prefetch(2)
seen = []
nacked = false
done = Queue.new
queue.subscribe(manual_ack: true) do |delivery, props, body|
  i = JSON.parse(body)["i"]
  if i == 2 && !nacked
    nacked = true
    ch.nack(delivery.delivery_tag, false, true)
  else
    seen << { "i" => i, "redelivered" => delivery.redelivered?, "n" => props.headers["n"],
              "id" => props.message_id }
    ch.ack(delivery.delivery_tag)
    done << true if seen.size == 3
  end
end
Timeout.timeout(10) { done.pop }

missing = nil
other = conn.create_channel
begin
  other.queue("ruby.missing", passive: true)
rescue Bunny::NotFound => e
  missing = e.channel_close.reply_code
end
still_open = ch.open?
conn.close
puts({ confirmed: confirmed, seen: seen.sort_by { |m| m["i"] }, missing: missing,
       first_channel_open: still_open }.to_json)
