// Go's amqp091 (Debian's golang-github-rabbitmq-amqp091-go-dev) against WarrenMQ.
//
// Usage: client AMQP_URL MANAGEMENT_URL
//
// Publishes with confirms, consumes with QoS 2 and acks, nacks one delivery with
// requeue (it comes back redelivered), gets a consumer cancel notification when its
// queue is deleted, sees connection.blocked/unblocked around a memory alarm, is closed
// by the management API (320) and reconnects, and checks that a passive declare of a
// missing queue fails with 404. Prints one JSON object; exits 1 with the reason.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

type report struct {
	Confirmed      int    `json:"confirmed"`
	Acked          int    `json:"acked"`
	Redelivered    int    `json:"redelivered"`
	MaxUnacked     int    `json:"max_unacked"`
	Cancelled      string `json:"cancelled"`
	Blocked        string `json:"blocked"`
	Unblocked      bool   `json:"unblocked"`
	CloseCode      int    `json:"close_code"`
	Reconnected    bool   `json:"reconnected"`
	AfterReconnect string `json:"after_reconnect"`
	MissingCode    int    `json:"missing_code"`
}

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func dial(url, name string) *amqp.Connection {
	conn, err := amqp.DialConfig(url, amqp.Config{
		Properties: amqp.Table{"connection_name": name}, Heartbeat: 10 * time.Second})
	must(err, "dial")
	return conn
}

func publish(ch *amqp.Channel, queue string, n int, size int) int {
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	must(ch.Confirm(false), "confirm.select")
	body := []byte(strings.Repeat("g", size))
	for i := 0; i < n; i++ {
		err := ch.PublishWithContext(context.Background(), "", queue, false, false,
			amqp.Publishing{Body: body, MessageId: fmt.Sprint(i), DeliveryMode: amqp.Persistent,
				Headers: amqp.Table{"i": int32(i), "lang": "go"}})
		must(err, "publish")
	}
	acked := 0
	for i := 0; i < n; i++ {
		select {
		case c := <-confirms:
			if c.Ack {
				acked++
			}
		case <-time.After(10 * time.Second):
			must(errors.New("timed out"), "confirms")
		}
	}
	return acked
}

// next waits for one delivery (bounded).
func next(deliveries <-chan amqp.Delivery) amqp.Delivery {
	select {
	case d := <-deliveries:
		return d
	case <-time.After(10 * time.Second):
		must(errors.New("timed out"), "consume")
	}
	return amqp.Delivery{}
}

// consume acks n messages with QoS 2: it first holds two deliveries unacked and checks
// that no third arrives, nacks the first with requeue (it comes back redelivered), then
// acks everything.
func consume(ch *amqp.Channel, queue string, n int, r *report) {
	must(ch.Qos(2, 0, false), "basic.qos")
	deliveries, err := ch.Consume(queue, "go-consumer", false, false, false, false, nil)
	must(err, "basic.consume")
	first, second := next(deliveries), next(deliveries)
	r.MaxUnacked = 2
	select {
	case d := <-deliveries:
		r.MaxUnacked = 3 // the broker ignored the prefetch
		must(d.Ack(false), "ack")
		r.Acked++
	case <-time.After(300 * time.Millisecond):
	}
	must(first.Nack(false, true), "nack")
	must(second.Ack(false), "ack")
	r.Acked++
	for r.Acked < n {
		d := next(deliveries)
		if d.Redelivered {
			r.Redelivered++
		}
		must(d.Ack(false), "ack")
		r.Acked++
	}
	must(ch.Cancel("go-consumer", false), "basic.cancel")
}

func closeByAPI(api, name string) {
	req, _ := http.NewRequest("GET", api+"/api/connections", nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	must(err, "GET /api/connections")
	var conns []struct {
		Name  string                 `json:"name"`
		Props map[string]interface{} `json:"client_properties"`
	}
	must(json.NewDecoder(resp.Body).Decode(&conns), "decode connections")
	resp.Body.Close()
	for _, c := range conns {
		if c.Props["connection_name"] == name {
			del, _ := http.NewRequest("DELETE", api+"/api/connections/"+pathEscape(c.Name), nil)
			del.SetBasicAuth("guest", "guest")
			resp, err := http.DefaultClient.Do(del)
			must(err, "DELETE connection")
			resp.Body.Close()
			return
		}
	}
	must(errors.New("not listed"), "find own connection")
}

func pathEscape(s string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F", " ", "%20", ">", "%3E").Replace(s)
}

func main() {
	url, api := os.Args[1], os.Args[2]
	r := report{}
	conn := dial(url, "go-main")
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	must(err, "channel.open")
	q, err := ch.QueueDeclare("go.work", true, false, false, false, nil)
	must(err, "queue.declare")
	r.Confirmed = publish(ch, q.Name, 10, 16)
	consume(ch, q.Name, 10, &r)

	// consumer cancel notification: the queue is deleted under the consumer
	cancels := ch.NotifyCancel(make(chan string, 1))
	_, err = ch.Consume(q.Name, "doomed", false, false, false, false, nil)
	must(err, "consume doomed")
	other, err := conn.Channel()
	must(err, "channel.open")
	_, err = other.QueueDelete(q.Name, false, false, false)
	must(err, "queue.delete")
	select {
	case tag := <-cancels:
		r.Cancelled = tag
	case <-time.After(5 * time.Second):
		must(errors.New("no basic.cancel"), "cancel notification")
	}

	// connection.blocked: the broker's memory watermark is tiny; 64 KiB messages trip it
	big, err := conn.Channel()
	must(err, "channel.open")
	_, err = big.QueueDeclare("go.big", false, false, false, false, nil)
	must(err, "queue.declare")
	// the alarm is checked every 100 ms; the first publish after it blocks us
	deadline := time.After(10 * time.Second)
wait:
	for {
		select {
		case b := <-blocked:
			if b.Active {
				r.Blocked = b.Reason
			}
			break wait
		case <-deadline:
			must(errors.New("no connection.blocked"), "blocked")
		case <-time.After(50 * time.Millisecond):
			must(big.PublishWithContext(context.Background(), "", "go.big", false, false,
				amqp.Publishing{Body: []byte(strings.Repeat("b", 65536))}), "publish big")
		}
	}
	drain := dial(url, "go-drain")
	dch, err := drain.Channel()
	must(err, "channel.open")
	_, err = dch.QueuePurge("go.big", false)
	must(err, "queue.purge")
	select {
	case b := <-blocked:
		r.Unblocked = !b.Active
	case <-time.After(10 * time.Second):
		must(errors.New("no connection.unblocked"), "unblocked")
	}
	drain.Close()

	// closed by the management API, then a reconnect that carries on
	closeByAPI(api, "go-main")
	select {
	case e := <-closed:
		if e != nil {
			r.CloseCode = e.Code
		}
	case <-time.After(10 * time.Second):
		must(errors.New("not closed"), "forced close")
	}
	conn = dial(url, "go-again")
	ch, err = conn.Channel()
	must(err, "channel.open after reconnect")
	r.Reconnected = true
	_, err = ch.QueueDeclare("go.again", false, true, false, false, nil)
	must(err, "queue.declare")
	publish(ch, "go.again", 1, 5)
	d, ok, err := ch.Get("go.again", true)
	must(err, "basic.get")
	if ok {
		r.AfterReconnect = string(d.Body)
	}

	// the failure path: a passive declare of a queue that does not exist
	_, err = ch.QueueDeclarePassive("go.missing", false, false, false, false, nil)
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		r.MissingCode = amqpErr.Code
	}
	conn.Close()
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
