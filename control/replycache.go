package control

import (
	"container/list"
	"sync"
)

// replyCache remembers the replies to the last few command ids, so that a
// command delivered twice (QoS 1) is answered again rather than run again.
type replyCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of string ids, most recent at the front
	items map[string]replyItem
}

type replyItem struct {
	reply Reply
	elem  *list.Element
}

func newReplyCache(max int) *replyCache {
	return &replyCache{max: max, order: list.New(), items: make(map[string]replyItem)}
}

func (c *replyCache) get(id string) (Reply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[id]
	if !ok {
		return Reply{}, false
	}
	c.order.MoveToFront(it.elem)
	return it.reply, true
}

func (c *replyCache) put(id string, r Reply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.items[id]; ok {
		c.order.MoveToFront(it.elem)
		c.items[id] = replyItem{r, it.elem}
		return
	}
	c.items[id] = replyItem{r, c.order.PushFront(id)}
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(string))
	}
}
