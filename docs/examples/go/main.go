// A service integrating with Closeloop over NATS, with nothing but a NATS client
// (github.com/nats-io/nats.go) and Go's standard library.
//
// Settings (environment), as for docs/examples/python/integrate.py:
//
//	NATS_URL                 nats://127.0.0.1:4222
//	CLOSELOOP_PREFIX         closeloop.v1 (serve's --subject-prefix)
//	CLOSELOOP_EVENTS_STREAM  CLOSELOOP_EVENTS (serve's --events-stream)
//	CLOSELOOP_KEY            this service's Ed25519 private key (PKCS#8 PEM)
//	CLOSELOOP_KID            the key's id in serve's keys file
//	CLOSELOOP_SUPERVISOR     a registered team lead, for the assignment (lead-1)
//	CLOSELOOP_AGENT          an agent of that team (agent-7)
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

var (
	prefix       = env("CLOSELOOP_PREFIX", "closeloop.v1")
	eventsStream = env("CLOSELOOP_EVENTS_STREAM", "CLOSELOOP_EVENTS")
	kid          = os.Getenv("CLOSELOOP_KID")
	supervisor   = env("CLOSELOOP_SUPERVISOR", "lead-1")
	agent        = env("CLOSELOOP_AGENT", "agent-7")
	key          ed25519.PrivateKey
)

type Actor struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

type Command struct {
	CommandID string         `json:"command_id"`
	Type      string         `json:"type"`
	Actor     Actor          `json:"actor"`
	Payload   map[string]any `json:"payload"`
}

// Reply is every command's reply: accepted, duplicate or rejected.
type Reply struct {
	Status    string   `json:"status"`
	CommandID *string  `json:"command_id"`
	Stream    string   `json:"stream"`
	Version   uint64   `json:"version"`
	Position  uint64   `json:"position"`
	Events    []string `json:"events"`
	Error     *struct {
		Code    string `json:"code"`
		Kind    string `json:"kind"`
		Message string `json:"message"`
	} `json:"error"`
}

// snippet: go-token
// token is a JWT for actor, signed EdDSA (Ed25519), valid five minutes.
func token(actor Actor) string {
	b64 := base64.RawURLEncoding.EncodeToString
	header, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": kid})
	claims, _ := json.Marshal(map[string]any{
		"sub": actor.ID, "role": actor.Role, "exp": time.Now().Add(5 * time.Minute).Unix(),
	})
	signingInput := b64(header) + "." + b64(claims)
	return signingInput + "." + b64(ed25519.Sign(key, []byte(signingInput)))
}

func auth(actor Actor) nats.Header {
	return nats.Header{"Authorization": []string{"Bearer " + token(actor)}}
}

// end snippet

func newCommand(commandType string, actor Actor, payload map[string]any) Command {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80 // a UUID v4
	return Command{fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:]),
		commandType, actor, payload}
}

// snippet: go-send
// send is request/reply: the reply is the command's result.
func send(nc *nats.Conn, cmd Command) (Reply, error) {
	body, _ := json.Marshal(cmd)
	msg := &nats.Msg{Subject: prefix + ".commands." + cmd.Type, Data: body, Header: auth(cmd.Actor)}
	answer, err := nc.RequestMsg(msg, 30*time.Second)
	if err != nil {
		return Reply{}, err
	}
	var reply Reply
	return reply, json.Unmarshal(answer.Data, &reply)
}

// sendDurable goes through durable intake: kept by JetStream once acked, answered on the
// replies subject.
func sendDurable(nc *nats.Conn, js nats.JetStreamContext, cmd Command) (Reply, error) {
	replies, err := nc.SubscribeSync(prefix + ".replies." + cmd.CommandID) // before publishing
	if err != nil {
		return Reply{}, err
	}
	defer replies.Unsubscribe()
	body, _ := json.Marshal(cmd)
	msg := &nats.Msg{Subject: prefix + ".commands.durable." + cmd.Type, Data: body,
		Header: auth(cmd.Actor)}
	msg.Header.Set("Nats-Msg-Id", cmd.CommandID)
	ack, err := js.PublishMsg(msg)
	if err != nil {
		return Reply{}, err
	}
	fmt.Printf("durable: stored as %s #%d\n", ack.Stream, ack.Sequence)
	answer, err := replies.NextMsg(30 * time.Second)
	if err != nil {
		return Reply{}, err
	}
	var reply Reply
	return reply, json.Unmarshal(answer.Data, &reply)
}

// end snippet

// snippet: go-assign
// assign assigns a ticket to agentID, which auto-assignment may have done already.
func assign(nc *nats.Conn, ticketID, agentID string) error {
	lead := Actor{supervisor, "supervisor"}
	reply, err := send(nc, newCommand("assign_ticket", lead,
		map[string]any{"ticket_id": ticketID, "agent_id": agentID}))
	switch {
	case err != nil:
		return err
	case reply.Status == "accepted" || reply.Status == "duplicate":
		fmt.Printf("assign: %s, %s has it\n", reply.Status, agentID)
	case reply.Error.Code == "invalid_transition":
		// Already this agent's (serve's process managers got there first), or the agent
		// cannot take it (another line, away): the message says which.
		fmt.Printf("assign: already assigned (%s)\n", reply.Error.Message)
	default:
		return fmt.Errorf("assign_ticket refused: %s %s", reply.Error.Code, reply.Error.Message)
	}
	return nil
}

// end snippet

// snippet: go-events
// awaitEvent reads the events stream with a durable pull consumer until eventType of the
// ticket.
func awaitEvent(js nats.JetStreamContext, ticketID, eventType string) error {
	deadline := time.Now().Add(30 * time.Second)
	sub, err := js.PullSubscribe(prefix+".events.ticket.>", "integrate",
		nats.BindStream(eventsStream), nats.DeliverAll(), nats.AckExplicit())
	for err != nil && time.Now().Before(deadline) { // the relay creates the stream when it first runs
		time.Sleep(200 * time.Millisecond)
		sub, err = js.PullSubscribe(prefix+".events.ticket.>", "integrate",
			nats.BindStream(eventsStream), nats.DeliverAll(), nats.AckExplicit())
	}
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		messages, err := sub.Fetch(100, nats.MaxWait(time.Second))
		if err != nil && err != nats.ErrTimeout {
			return err
		}
		for _, msg := range messages {
			var event struct {
				Position uint64 `json:"position"`
				Stream   string `json:"stream"`
				Version  uint64 `json:"version"`
				EventID  string `json:"event_id"`
				Type     string `json:"type"`
			}
			if err := json.Unmarshal(msg.Data, &event); err != nil {
				return err
			}
			_ = msg.Ack() // at least once: de-duplicate by event_id, or keep the position
			if event.Stream == "ticket-"+ticketID && event.Type == eventType {
				fmt.Printf("event: %s position %d version %d on %s\n",
					event.Type, event.Position, event.Version, msg.Subject)
				for _, name := range []string{"Nats-Msg-Id", "Closeloop-Position",
					"Closeloop-Log-Id", "Nats-Expected-Last-Sequence"} {
					fmt.Printf("  header %s: %s\n", name, msg.Header.Get(name))
				}
				return nil
			}
		}
	}
	return fmt.Errorf("no %s of ticket %s on %s", eventType, ticketID, eventsStream)
}

// end snippet

// snippet: go-report
// reportSLA asks for the SLA report, as `closeloop report sla --json` prints it.
func reportSLA(nc *nats.Conn) (map[string]json.RawMessage, error) {
	auditor := Actor{"audit-1", "auditor"}
	request, _ := json.Marshal(map[string]any{"period": "total", "at_risk": true, "limit": 10})
	msg := &nats.Msg{Subject: prefix + ".queries.report_sla", Data: request, Header: auth(auditor)}
	answer, err := nc.RequestMsg(msg, 30*time.Second)
	if err != nil {
		return nil, err
	}
	var report map[string]json.RawMessage
	if err := json.Unmarshal(answer.Data, &report); err != nil {
		return nil, err
	}
	if _, refused := report["error"]; refused {
		return nil, fmt.Errorf("report_sla refused: %s", answer.Data)
	}
	return report, nil
}

// end snippet

func main() {
	pemBytes, err := os.ReadFile(os.Getenv("CLOSELOOP_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		log.Fatal("CLOSELOOP_KEY is not PEM")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	key = parsed.(ed25519.PrivateKey)

	nc, err := nats.Connect(env("NATS_URL", nats.DefaultURL))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Drain()
	js, err := nc.JetStream()
	if err != nil {
		log.Fatal(err)
	}
	crm := Actor{"crm", "service"}

	ticketID := newCommand("", crm, nil).CommandID // any UUID
	reply, err := send(nc, newCommand("open_ticket", crm, map[string]any{
		"ticket_id": ticketID, "customer_id": "cust-1", "channel": "email",
		"category": "incident", "priority": "high", "subject": "Printer on fire"}))
	if err != nil || reply.Status != "accepted" {
		log.Fatalf("open_ticket: %v %+v", err, reply)
	}
	fmt.Printf("command: %s %v in %s\n", reply.Status, reply.Events, reply.Stream)

	reply, err = sendDurable(nc, js, newCommand("open_ticket", crm, map[string]any{
		"ticket_id": newCommand("", crm, nil).CommandID, "customer_id": "cust-2",
		"channel": "web", "category": "inquiry", "priority": "normal",
		"subject": "Where is my order?"}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("durable: %s %v\n", reply.Status, reply.Events)

	if err := assign(nc, ticketID, agent); err != nil {
		log.Fatal(err)
	}
	if err := awaitEvent(js, ticketID, "ticket_opened"); err != nil {
		log.Fatal(err)
	}
	report, err := reportSLA(nc)
	if err != nil {
		log.Fatal(err)
	}
	names := make([]string, 0, len(report))
	for name := range report {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Printf("report: report_sla answered with %s\n", strings.Join(names, ", "))
}
