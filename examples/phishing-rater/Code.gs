/**
 * A Gmail add-on (Apps Script) that rates the open message with stratus's phishing-rater.
 * Script properties: STRATUS_URL (https://… — stratus with TLS or behind a tunnel, see
 * README.md) and STRATUS_KEY (a virtual key: `stratus keys create --models phishing-rater`).
 * appsscript.json needs the scopes gmail.addons.execute, gmail.addons.current.message.readonly
 * and script.external_request, and a gmail.contextualTriggers entry calling onGmailMessage.
 */
function onGmailMessage(e) {
  GmailApp.setCurrentMessageAccessToken(e.gmail.accessToken);
  const msg = GmailApp.getMessageById(e.gmail.messageId);
  const props = PropertiesService.getScriptProperties();
  const res = UrlFetchApp.fetch(props.getProperty('STRATUS_URL') + '/v1/functions/phishing-rater/invoke', {
    method: 'post',
    contentType: 'application/json',
    headers: { Authorization: 'Bearer ' + props.getProperty('STRATUS_KEY') },
    payload: JSON.stringify({ from: msg.getFrom(), subject: msg.getSubject(), body: msg.getPlainBody().slice(0, 8000) }),
    muteHttpExceptions: true,
  });
  const answer = JSON.parse(res.getContentText());
  const text = res.getResponseCode() === 200
    ? answer.label + ' (' + Math.round(answer.score * 100) + '%)'
    : 'stratus: ' + answer.error.message;
  return CardService.newCardBuilder()
    .setHeader(CardService.newCardHeader().setTitle('Phishing check'))
    .addSection(CardService.newCardSection().addWidget(CardService.newTextParagraph().setText(text)))
    .build();
}
