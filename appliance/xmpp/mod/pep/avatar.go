package pep

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"image"
	_ "image/gif"  // registers GIF for image.DecodeConfig (XEP-0084 width/height)
	_ "image/jpeg" // registers JPEG
	_ "image/png"  // registers PNG
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Namespaces and nodes of XEP-0084 User Avatar, XEP-0054 vcard-temp and
// XEP-0398.
const (
	// NodeAvatarData is the XEP-0084 §4.1 data node; its items hold base64
	// image data, with the image's SHA-1 (hex) as item id.
	NodeAvatarData = "urn:xmpp:avatar:data"
	// NodeAvatarMetadata is the XEP-0084 §4.2 metadata node.
	NodeAvatarMetadata = "urn:xmpp:avatar:metadata"
	// NodeVCard4 is the XEP-0292 vCard4 node; DefaultConfig applies.
	NodeVCard4 = "urn:xmpp:vcard4"
	// NSVCard is the vcard-temp namespace (XEP-0054).
	NSVCard = "vcard-temp"
	// NSVCardConversion is the XEP-0398 §2 feature advertised on accounts.
	NSVCardConversion = "urn:xmpp:pep-vcard-conversion:0"
)

// conversionKey marks the context of publications and vCard updates made by
// the conversion itself, so that its own change hook ignores them.
type conversionKey struct{}

type avatarConv struct {
	s       *server.Server
	svc     *Service
	setBase server.IQHandler // mod/vcard's vcard-temp set, which this wraps
}

// RegisterVCardConversion implements XEP-0398 for every account, on top of
// mod/vcard and svc:
//
//   - from PEP to vCard (XEP-0398 §3.1): after a publication to the
//     metadata node, the image of its first <info/> without a url (looked up
//     in the data node by id, checked against its SHA-1) becomes the PHOTO
//     (TYPE, BINVAL) of the stored vCard-temp; empty metadata (XEP-0084
//     §4.5, avatar disabled), a retraction or a deleted node removes PHOTO;
//   - from vCard to PEP (XEP-0398 §3.2): a vCard-temp set with a PHOTO
//     BINVAL publishes the image to the data node (item id = SHA-1 hex) and
//     then one <info/> (bytes, id, type, and width/height for PNG, JPEG and
//     GIF) to the metadata node, notifying as usual; a set that drops the
//     PHOTO publishes empty metadata. Nothing is published when the metadata
//     already names that image.
//
// It advertises urn:xmpp:pep-vcard-conversion:0 on accounts (XEP-0398 §2).
//
// To see vCard sets it wraps the vcard-temp set handler registered by
// vcard.Register, which must run first (it panics otherwise): that module's
// rules and limits apply unchanged, and a successful set is converted.
// Conversion failures are logged; the vCard set still succeeds.
func RegisterVCardConversion(s *server.Server, svc *Service) {
	name := xml.Name{Space: NSVCard, Local: "vCard"}
	a := &avatarConv{s: s, svc: svc, setBase: s.IQHandler(server.ToAccount, "set", name)}
	if a.setBase == nil {
		panic("pep: RegisterVCardConversion needs vcard.Register first")
	}
	s.HandleIQ(server.ToAccount, "set", name, a.setVCard)
	s.AddFeature(server.ToAccount, NSVCardConversion)
	svc.OnChange(NodeAvatarMetadata, a.metadataChanged)
	s.OnPresenceOut(a.presenceHash)
}

// NSVCardUpdate is XEP-0153's presence extension carrying the avatar hash.
const NSVCardUpdate = "vcard-temp:x:update"

// presenceHash puts the hash of the user's current avatar into their
// available presence (XEP-0398 §4, XEP-0153 §3.1), replacing what the client
// sent: an empty <photo/> when the avatar is disabled, the client's element
// untouched when the user never published one.
func (a *avatarConv) presenceHash(ctx context.Context, sess *server.Session, p *xmlel.Element) {
	items, err := a.svc.Items(ctx, sess.Username(), NodeAvatarMetadata)
	if err != nil || len(items) == 0 {
		return
	}
	photo := xmlel.New(NSVCardUpdate, "photo")
	if meta := items[len(items)-1].Payload; meta != nil {
		if info := meta.Child(NodeAvatarMetadata, "info"); info != nil {
			photo.AddText(info.Get("id"))
		}
	}
	p.RemoveChildren(func(e *xmlel.Element) bool { return e.Name.Space == NSVCardUpdate })
	p.Add(xmlel.New(NSVCardUpdate, "x").Add(photo))
}

// setVCard stores the vCard through mod/vcard (XEP-0054 §3.2) and then
// publishes its photo (XEP-0398 §3.2).
func (a *avatarConv) setVCard(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	user := iq.From.Localpart()
	old, err := a.s.Store().VCard(ctx, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if _, err := a.setBase(ctx, iq); err != nil {
		return nil, err
	}
	if err := a.vcardToPEP(context.WithValue(ctx, conversionKey{}, true), user, old, iq.Payload); err != nil {
		a.s.Logger().Warn("pep: vCard to avatar conversion failed", "user", user, "err", err)
	}
	return nil, nil
}

// vcardPhoto returns the MIME type and image bytes of a vCard's PHOTO BINVAL.
func vcardPhoto(vcard *xmlel.Element) (typ string, img []byte, ok bool) {
	if vcard == nil {
		return "", nil, false
	}
	p := vcard.Child(NSVCard, "PHOTO")
	if p == nil {
		return "", nil, false
	}
	b64 := strings.Join(strings.Fields(p.ChildText(NSVCard, "BINVAL")), "")
	img, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(img) == 0 {
		return "", nil, false
	}
	return strings.TrimSpace(p.ChildText(NSVCard, "TYPE")), img, true
}

func sha1Hex(b []byte) string {
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

// currentInfo returns the <info/> of the image the last metadata item
// names, nil for none (no node, no item, empty metadata).
func (a *avatarConv) currentInfo(ctx context.Context, user string) *xmlel.Element {
	items, err := a.svc.items(ctx, user, NodeAvatarMetadata, nil, 1)
	if err != nil || len(items) == 0 {
		return nil
	}
	return firstInfo(items[0].Payload)
}

// firstInfo returns the first <info/> of XEP-0084 metadata that does not
// point to an external URL (XEP-0398 §3.1).
func firstInfo(meta *xmlel.Element) *xmlel.Element {
	for _, info := range meta.ChildrenNamed(NodeAvatarMetadata, "info") {
		if info.Get("url") == "" && info.Get("id") != "" {
			return info
		}
	}
	return nil
}

// vcardToPEP publishes the new vCard's photo, or empty metadata when the
// photo was removed (XEP-0398 §3.2, XEP-0084 §4.5).
func (a *avatarConv) vcardToPEP(ctx context.Context, user string, oldData []byte, vcard *xmlel.Element) error {
	typ, img, ok := vcardPhoto(vcard)
	current := ""
	if info := a.currentInfo(ctx, user); info != nil {
		current = info.Get("id")
	}
	if !ok {
		var old *xmlel.Element
		if len(oldData) > 0 {
			old, _ = xmlel.Parse(string(oldData))
		}
		if _, _, had := vcardPhoto(old); !had || current == "" {
			return nil
		}
		_, err := a.svc.Publish(ctx, user, NodeAvatarMetadata, "", xmlel.New(NodeAvatarMetadata, "metadata"), nil)
		return err
	}
	id := sha1Hex(img)
	if id == current {
		return nil
	}
	cfg, format, derr := image.DecodeConfig(bytes.NewReader(img))
	switch {
	case typ != "":
	case derr == nil:
		typ = "image/" + format
	default:
		typ = "image/png" // XEP-0084 §4.2.1 requires a type; PNG is the one every client supports
	}
	data := xmlel.New(NodeAvatarData, "data").AddText(base64.StdEncoding.EncodeToString(img))
	if _, err := a.svc.Publish(ctx, user, NodeAvatarData, id, data, nil); err != nil {
		return err
	}
	info := xmlel.New(NodeAvatarMetadata, "info", "bytes", strconv.Itoa(len(img)), "id", id, "type", typ)
	if derr == nil {
		info.Set("width", strconv.Itoa(cfg.Width))
		info.Set("height", strconv.Itoa(cfg.Height))
	}
	_, err := a.svc.Publish(ctx, user, NodeAvatarMetadata, id, xmlel.New(NodeAvatarMetadata, "metadata").Add(info), nil)
	return err
}

// metadataChanged copies the published avatar into the vCard (XEP-0398
// §3.1), unless the change came from the conversion itself.
func (a *avatarConv) metadataChanged(ctx context.Context, user, _ string) {
	if ctx.Value(conversionKey{}) != nil {
		return
	}
	if err := a.pepToVCard(ctx, user); err != nil {
		a.s.Logger().Warn("pep: avatar to vCard conversion failed", "user", user, "err", err)
	}
}

func (a *avatarConv) pepToVCard(ctx context.Context, user string) error {
	var typ, b64 string
	if info := a.currentInfo(ctx, user); info != nil {
		id := info.Get("id")
		items, err := a.svc.items(ctx, user, NodeAvatarData, []string{id}, 0)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if len(items) == 0 {
			return nil // the data is not (yet) there: nothing to convert
		}
		b64 = strings.Join(strings.Fields(items[0].Payload.Text()), "")
		img, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || sha1Hex(img) != id {
			return errors.New("avatar data " + id + " does not match its id")
		}
		typ = info.Get("type")
	}
	data, err := a.s.Store().VCard(ctx, user)
	var vcard *xmlel.Element
	switch {
	case errors.Is(err, store.ErrNotFound):
		if b64 == "" {
			return nil
		}
		vcard = xmlel.New(NSVCard, "vCard")
	case err != nil:
		return err
	default:
		if vcard, err = xmlel.Parse(string(data)); err != nil {
			return err
		}
	}
	had := vcard.Child(NSVCard, "PHOTO") != nil
	vcard.RemoveChildren(func(e *xmlel.Element) bool { return e.Name.Space == NSVCard && e.Name.Local == "PHOTO" })
	if b64 == "" && !had {
		return nil
	}
	if b64 != "" {
		photo := xmlel.New(NSVCard, "PHOTO")
		if typ != "" {
			photo.Add(xmlel.New(NSVCard, "TYPE").AddText(typ))
		}
		vcard.Add(photo.Add(xmlel.New(NSVCard, "BINVAL").AddText(b64)))
	}
	var out []byte
	if len(vcard.Children) > 0 {
		out = []byte(vcard.String())
	}
	return a.s.Store().SetVCard(ctx, user, out)
}
