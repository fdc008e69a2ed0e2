// Starts Converse.js with the settings Hearth put into the page
// (<script id="hearth-config" type="application/json">, written by
// appliance/webclient for this server's domain and address).
import './dist/converse.min.js';

const settings = JSON.parse(document.getElementById('hearth-config').textContent);

// Converse's fullscreen footer shows its sponsors' logos, loaded from other
// sites. Hearth's page loads nothing from elsewhere, so the footer element is
// defined here first as an empty one (Converse does not redefine an element
// that already exists).
if (!customElements.get('converse-footer')) {
    customElements.define('converse-footer', class extends HTMLElement {});
}

window.converse.initialize(settings);
