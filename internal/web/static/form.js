// The mailbox form without a round trip: the add form's protocol shows POP3's poll interval,
// offers only what the protocol can do once a message is taken (POP3: keep or delete), and
// hides the copy of sent mail, which needs IMAP. Without this script every input is shown and
// the API's error stands next to a choice the protocol cannot do.
(function () {
  "use strict";
  function field(name) { return document.querySelector('[data-field="' + name + '"]'); }
  function apply() {
    var protocol = document.getElementById("protocol");
    if (!protocol || protocol.tagName !== "SELECT") { return; }
    var pop3 = protocol.value === "pop3";
    ["poll_interval"].forEach(function (n) { var f = field(n); if (f) { f.hidden = !pop3; } });
    ["save_sent_copy", "sent_folder"].forEach(function (n) { var f = field(n); if (f) { f.hidden = pop3; } });
    var ack = document.getElementById("after_ack");
    if (ack) {
      Array.prototype.forEach.call(ack.options, function (o) {
        var unfit = pop3 && (o.value === "mark_seen" || o.value === "move");
        o.hidden = unfit;
        o.disabled = unfit;
      });
      if (ack.selectedOptions.length && ack.selectedOptions[0].disabled) { ack.value = "keep"; }
      var folder = field("after_ack_folder");
      if (folder) { folder.hidden = pop3; }
    }
    var port = document.getElementById("port");
    var security = document.getElementById("security");
    if (port && security) {
      var tls = security.value === "tls";
      port.placeholder = pop3 ? (tls ? "995" : "110") : (tls ? "993" : "143");
    }
  }
  document.addEventListener("change", function (e) {
    if (e.target && (e.target.id === "protocol" || e.target.id === "security")) { apply(); }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", apply);
  } else {
    apply();
  }
})();
